"""The per-worker training loop (runs inside each Ray Train worker).

Read top to bottom: set up (model, optimiser, schedule, resume), then for each
step: this step's global batch from the plan, augmentation, forward/backward
(GradCache or not), SUM gradients across workers, clip, AdamW, schedule;
every ``eval_every`` steps rank 0 validates and all ranks report a checkpoint.

Why it is shaped like this:

* No DDP wrapper. Each rank's loss is its *share* of the global-batch loss
  (see :mod:`skilltrain.training.loss`), so gradients must be summed, not averaged, and
  GradCache does several backward passes per step; a plain all-reduce after
  the step is both exact and simpler than DDP with ``no_sync``.
* Determinism for resume: the batch plan and augmentation depend only on
  ``(seed, epoch, step)``, and torch's RNG (dropout) is reseeded every step
  from ``(seed, step, rank)``. A run resumed from a checkpoint therefore
  replays exactly the steps an uninterrupted run would take; the checkpoint
  only needs weights, optimiser, schedule and the step counter.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skilltrain.training.augment import AugmentedBatch, augment_batch, step_rng
from skilltrain.config import TrainConfig
from skilltrain.training.gradcache import forward_backward
from skilltrain.training.loss import allreduce_gradients, allreduce_sum, contrastive_loss, world
from skilltrain.model import BiEncoder
from skilltrain.training.sampler import BatchPlan, plan_epoch

STATE_FILE = "train_state.pt"
META_FILE = "meta.json"


@dataclass
class TrainData:
    """What every worker needs, shipped once through the Ray object store (multi-node safe)."""

    sentences: list[str]
    labels: list[str]
    cls: np.ndarray
    partner_pool: np.ndarray  # pair indices whose sentences may be joined as augmentation partners
    val_skills: Any = None  # polars frame of the taxonomy, or None (no validation)
    val_benchmarks: list = field(default_factory=list)


# ---- one step -----------------------------------------------------------------


def global_batch(data: TrainData, plan: BatchPlan, cfg: TrainConfig, epoch: int, step_in_epoch: int) -> AugmentedBatch:
    """The augmented global batch of this step; identical on every rank."""
    idx = plan.batches[step_in_epoch]
    return augment_batch(idx, data.sentences, data.labels, data.cls, data.partner_pool, cfg.augment_prob, step_rng(cfg.seed, epoch, step_in_epoch))


def compute_gradients(
    encoder: BiEncoder,
    batch: AugmentedBatch,
    batch_size: int,
    scale: float = 20.0,
    symmetric: bool = True,
    gradcache_chunk: int = 0,
    autocast=contextlib.nullcontext,
) -> float:
    """Accumulate this rank's gradients for the global ``batch`` and SUM them over ranks.

    Afterwards every rank holds the gradient of the global-batch loss, exactly as a
    single process on the whole batch would. Returns the global loss.
    """
    rank, _ = world()
    rows = slice(rank * batch_size, (rank + 1) * batch_size)
    loss_fn = partial(
        contrastive_loss,
        cls=torch.as_tensor(batch.cls),
        partner_cls=torch.as_tensor(batch.partner_cls),
        scale=scale,
        symmetric=symmetric,
    )
    local_loss = forward_backward(encoder, batch.texts[rows], batch.labels[rows], loss_fn, gradcache_chunk, autocast)
    allreduce_gradients(encoder.parameters())
    return allreduce_sum(local_loss.item(), encoder.device)


def lr_lambda(total_steps: int, warmup_ratio: float):
    warmup = max(1, math.ceil(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---- validation -----------------------------------------------------------------


def validate(encoder: BiEncoder, data: TrainData) -> dict[str, float]:
    """Mean RP@5 per validation set (one skill index build for all sets) and their mean."""
    from skilltrain.evaluation.evaluate import evaluate

    reports = evaluate(encoder, data.val_skills, data.val_benchmarks, ci=False)
    out = {f"val_{name}_rp5": report.means()["RP@5"] for name, report in reports.items()}
    out["val_rp5"] = float(np.mean(list(out.values())))
    return out


# ---- checkpoints -----------------------------------------------------------------


def save_checkpoint(directory: Path, encoder, optimizer, scheduler, meta: dict) -> None:
    torch.save(
        {"model": encoder.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        directory / STATE_FILE,
    )
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))


def load_checkpoint(directory: Path, encoder, optimizer, scheduler) -> dict:
    state = torch.load(directory / STATE_FILE, map_location=encoder.device, weights_only=False)
    encoder.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return json.loads((directory / META_FILE).read_text())


def load_model_weights(checkpoint_dir: Path, encoder: BiEncoder) -> dict:
    state = torch.load(Path(checkpoint_dir) / STATE_FILE, map_location="cpu", weights_only=False)
    encoder.load_state_dict(state["model"])
    return json.loads((Path(checkpoint_dir) / META_FILE).read_text())


# ---- the loop -----------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[skilltrain] {msg}", flush=True)


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def total_steps(n_batches_per_epoch: int, cfg: TrainConfig) -> int:
    steps = n_batches_per_epoch * cfg.epochs
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train entry point: ``{"config": TrainConfig.to_json(), "data": ObjectRef[TrainData]}``."""
    import ray
    import ray.train
    import ray.train.torch

    cfg = TrainConfig.from_json(loop_config["config"])
    data: TrainData = loop_config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    rank, size = world()
    device = ray.train.torch.get_device()
    use_bf16 = device.type == "cuda" and cfg.bf16
    autocast = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext

    # -- model, optimiser, schedule
    torch.manual_seed(cfg.seed)
    encoder = BiEncoder.from_pretrained(cfg.model, cfg.max_seq_length).to(device)
    encoder.train()
    if size > 1:  # identical start on every rank, whatever the files said
        for tensor in encoder.state_dict().values():
            torch.distributed.broadcast(tensor, 0)
    decay = [p for n, p in encoder.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in encoder.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    first_plan = plan_epoch(data.cls, cfg.global_batch_size, cfg.seed, 0)
    n_total = total_steps(len(first_plan), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(n_total, cfg.warmup_ratio))

    # -- resume
    step, history, last_val, best, resumes = 0, [], None, None, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            meta = load_checkpoint(Path(ckpt_dir), encoder, optimizer, scheduler)
        if meta["global_batch_size"] != cfg.global_batch_size:
            raise RuntimeError(
                f"checkpoint was trained with global batch {meta['global_batch_size']}, this run has "
                f"{cfg.global_batch_size}: use a new --name or the same workers x batch size"
            )
        step, history, last_val, best = meta["step"], meta["history"], meta.get("last_val"), meta.get("best")
        resumes = meta.get("resumes", []) + [step]
        if rank == 0:
            _log(f"resumed from checkpoint at step {step}")
    if rank == 0:
        _log(
            f"{size} worker(s) x batch {cfg.batch_size} = global batch {cfg.global_batch_size}; "
            f"{len(first_plan)} steps/epoch ({first_plan.dropped} pairs left out of epoch 1), {n_total} steps; "
            f"device {device.type}{' bf16' if use_bf16 else ''}; GradCache chunk {cfg.gradcache_chunk or 'off'}; "
            f"validation {'on ' + ','.join(cfg.val_sets) if data.val_benchmarks else 'off'}"
        )

    def report(loss: float) -> None:
        nonlocal best
        timed = samples_done - first_step_samples
        rate = timed / (time.perf_counter() - first_step_done) if first_step_done and timed else 0.0
        metrics: dict[str, Any] = {
            "step": step, "epoch": epoch, "loss": loss, "samples_per_s": rate, "peak_mem_mb": peak_memory_mb(device),
        }
        mem = torch.tensor([metrics["peak_mem_mb"]], device=device)
        if size > 1:
            torch.distributed.all_reduce(mem, op=torch.distributed.ReduceOp.MAX)
        metrics["peak_mem_mb"] = float(mem.item())
        metrics["mem_before_training_mb"] = mem_before_training  # rank 0's
        if rank == 0 and last_val is not None and last_val["step"] == step:
            metrics.update({k: v for k, v in last_val.items() if k != "step"})
        meta = {
            "step": step, "epoch": epoch, "global_batch_size": cfg.global_batch_size,
            "history": history, "last_val": last_val, "best": best, "metrics": metrics, "resumes": resumes,
        }
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_checkpoint(Path(tmp), encoder, optimizer, scheduler, meta)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)

    # -- train
    started, samples_done, loss_ema = time.perf_counter(), 0, None
    first_step_done, first_step_samples = 0.0, 0  # throughput excludes the first (warm-up) step
    mem_before_training = peak_memory_mb(device)  # model loaded, data in memory, no step taken
    epoch = step // len(first_plan) if len(first_plan) else 0
    if step >= n_total and history:  # rerun of a finished run: report the final state again, train nothing
        report(history[-1]["loss"])
        return

    while step < n_total:
        epoch, step_in_epoch = divmod(step, len(first_plan))
        plan = first_plan if epoch == 0 else plan_epoch(data.cls, cfg.global_batch_size, cfg.seed, epoch)
        if step_in_epoch >= len(plan):  # a later epoch's plan may be a batch shorter
            step = (epoch + 1) * len(first_plan)
            continue
        torch.manual_seed(hash((cfg.seed, step, rank)) & 0x7FFF_FFFF)
        batch = global_batch(data, plan, cfg, epoch, step_in_epoch)
        loss = compute_gradients(encoder, batch, cfg.batch_size, cfg.scale, cfg.symmetric, cfg.gradcache_chunk, autocast)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(encoder.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        samples_done += cfg.global_batch_size
        if not first_step_done:
            first_step_done, first_step_samples = time.perf_counter(), samples_done
        loss_ema = loss if loss_ema is None else 0.9 * loss_ema + 0.1 * loss

        if cfg.fail_at_step and step == cfg.fail_at_step and rank == size - 1:
            marker = cfg.storage / cfg.run_name / f"injected_failure_at_step_{step}"
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text("failed once\n")
                raise RuntimeError(f"injected failure at step {step} (fail_at_step, testing only)")

        if rank == 0 and (step % cfg.log_every == 0 or step == n_total):
            elapsed = time.perf_counter() - started
            rate = samples_done / elapsed
            eta = (n_total - step) * cfg.global_batch_size / rate
            val = f" | val RP@5 {last_val['val_rp5']:.1f} (step {last_val['step']})" if last_val else ""
            _log(
                f"step {step}/{n_total} epoch {epoch + 1}/{cfg.epochs} | loss {loss:.4f} (ema {loss_ema:.4f}) "
                f"| lr {scheduler.get_last_lr()[0]:.2e} | {rate:.1f} samples/s | ETA {_fmt_eta(eta)}{val}"
            )
        if step % cfg.eval_every == 0 or step == n_total:
            entry = {"step": step, "loss": loss}
            if rank == 0 and data.val_benchmarks:
                t0 = time.perf_counter()
                last_val = {"step": step, **validate(encoder, data)}
                entry["val_rp5"] = last_val["val_rp5"]
                if best is None or last_val["val_rp5"] > best["val_rp5"]:
                    best = {"step": step, "val_rp5": last_val["val_rp5"]}
                _log(
                    f"validation at step {step}: RP@5 {last_val['val_rp5']:.2f} ("
                    + ", ".join(f"{k[4:-4].upper()} {v:.2f}" for k, v in last_val.items() if k.startswith("val_") and k != "val_rp5")
                    + f") best {best['val_rp5']:.2f} at step {best['step']} [{time.perf_counter() - t0:.1f} s]"
                )
            history.append(entry)
            report(loss)
