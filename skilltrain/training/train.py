"""The per-worker training loop (runs inside each Ray Train worker).

Read top to bottom: :func:`setup` (model, optimiser, schedule), :func:`resume`
(from a checkpoint dir), then :func:`train`: :func:`train_step` until the
schedule ends, with :func:`validate_and_checkpoint` every ``eval_every``
steps and at the last one. :func:`train_loop_per_worker` is the thin Ray
Train adapter around these; the loop itself knows nothing of Ray beyond the
``report`` function it is given, so a test (or a one-GPU script) can run it
in-process.

Why it is shaped like this:

* No DDP wrapper. Each rank's loss is its *share* of the global-batch loss
  (see :mod:`skilltrain.training.loss`), so gradients must be summed, not averaged, and
  GradCache does several backward passes per step; a plain all-reduce after
  the step is both exact and simpler than DDP with ``no_sync``. Every
  collective is in :mod:`skilltrain.training.distributed`.
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
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from skillgen.common.raymetrics import publish
from skilltrain.model import BiEncoder
from skilltrain.training import hardneg
from skilltrain.training.augment import AugmentedBatch, augment_batch, step_rng
from skilltrain.training.distributed import allreduce_gradients, allreduce_max, allreduce_sum, broadcast_module, world
from skilltrain.training.gradcache import forward_backward, tokenize
from skilltrain.training.loss import loss_fn_for
from skilltrain.training.sampler import Schedule, plan_schedule

if TYPE_CHECKING:  # pydantic stays out of the import path of one-GPU scripts that use the step code
    from skilltrain.config import TrainConfig

STATE_FILE = "train_state.pt"
META_FILE = "meta.json"

Report = Callable[[dict, "Path | None"], None]  # (metrics, checkpoint dir on rank 0 / None) -> None


@dataclass
class TrainData:
    """What every worker needs, shipped once through the Ray object store (multi-node safe)."""

    sentences: list[str]
    labels: list[str]
    cls: np.ndarray
    partner_pool: np.ndarray  # pair indices whose sentences may be joined as augmentation partners
    val_skills: Any = None  # polars frame of the taxonomy, or None (no validation)
    val_benchmarks: list = field(default_factory=list)
    class_labels: list[str] = field(default_factory=list)  # label text per class id (hard negatives)
    hard_negatives: np.ndarray | None = None  # (n_classes, pool) mined class ids, or None


# ---- one step -----------------------------------------------------------------


def global_batch(data: TrainData, plan, cfg: "TrainConfig", epoch: int, step_in_epoch: int) -> AugmentedBatch:
    """The augmented global batch of this step, with its hard negatives if any; identical on every rank."""
    idx = plan.batches[step_in_epoch]
    batch = augment_batch(idx, data.sentences, data.labels, data.cls, data.partner_pool, cfg.augment_prob, step_rng(cfg.seed, epoch, step_in_epoch))
    if not cfg.hard_negatives or data.hard_negatives is None:
        return batch
    rng = np.random.default_rng([cfg.seed, 2, epoch, step_in_epoch])  # own stream: augmentation stays as without
    neg_cls = hardneg.draw(data.hard_negatives, batch.cls, cfg.hard_negatives, rng).reshape(-1)
    return AugmentedBatch(batch.texts, batch.labels, batch.cls, batch.partner_cls, [data.class_labels[c] for c in neg_cls], neg_cls)


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
    k = len(batch.negatives) // len(batch.texts)
    cls, partner_cls, neg_cls = (torch.as_tensor(a) for a in (batch.cls, batch.partner_cls, batch.neg_cls))

    texts = [batch.texts[rows], batch.labels[rows]] + ([batch.negatives[rows.start * k : rows.stop * k]] if k else [])
    groups = [tokenize(encoder, t) for t in texts]

    loss_fn = loss_fn_for(encoder, groups, cls, partner_cls, neg_cls, scale, symmetric)
    local_loss = forward_backward(encoder, groups, loss_fn, gradcache_chunk, autocast)
    allreduce_gradients(encoder.parameters())
    return allreduce_sum(local_loss.item(), encoder.device)


def lr_lambda(total_steps: int, warmup_ratio: float):
    warmup = max(1, math.ceil(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def autocast_for(device: torch.device, bf16: bool) -> Callable[[], contextlib.AbstractContextManager]:
    """bf16 autocast on CUDA when asked; float32 otherwise (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.type == "cuda" and bf16:
        return partial(torch.autocast, "cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---- validation and checkpoints -------------------------------------------------


def validate(encoder: BiEncoder, data: TrainData) -> dict[str, float]:
    """Mean RP@5 per validation set (one skill index build for all sets) and their mean."""
    from skilltrain.evaluation.evaluate import evaluate

    reports = evaluate(encoder, data.val_skills, data.val_benchmarks, ci=False)
    out = {f"val_{name}_rp5": report.means()["RP@5"] for name, report in reports.items()}
    out["val_rp5"] = float(np.mean(list(out.values())))
    return out


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


def _log(msg: str) -> None:
    """One progress line on the worker's stdout (streamed to the driver by Ray).

    Not ``print``: Ray Train patches ``print`` in its workers to also log the text, and the
    driver's console then shows every line twice.
    """
    sys.stdout.write(f"[skilltrain] {msg}\n")
    sys.stdout.flush()


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


# ---- the loop's state -----------------------------------------------------------


@dataclass
class Run:
    """What :func:`setup` builds; fixed for the run."""

    cfg: "TrainConfig"
    data: TrainData
    encoder: BiEncoder
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    schedule: Schedule
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    rank: int
    size: int


@dataclass
class LoopState:
    """What a checkpoint carries besides the tensors; everything else is recomputed from the config."""

    step: int = 0
    history: list[dict] = field(default_factory=list)  # one entry per logged step: step, loss, and val_rp5 at validations
    last_val: dict | None = None
    best: dict | None = None
    resumes: list[int] = field(default_factory=list)  # steps this run was resumed at


@dataclass
class Meter:
    """Throughput (first, warm-up step excluded), loss EMA, memory before the first step."""

    mem_before_training_mb: float
    started: float = field(default_factory=time.perf_counter)
    samples: int = 0
    first_step_at: float = 0.0
    first_step_samples: int = 0
    loss_ema: float | None = None

    def update(self, samples: int, loss: float) -> None:
        self.samples += samples
        if not self.first_step_at:
            self.first_step_at, self.first_step_samples = time.perf_counter(), self.samples
        self.loss_ema = loss if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * loss

    def samples_per_s(self) -> float:
        timed = self.samples - self.first_step_samples
        return timed / (time.perf_counter() - self.first_step_at) if self.first_step_at and timed else 0.0


# ---- the loop ---------------------------------------------------------------------


def setup(cfg: "TrainConfig", data: TrainData, device: torch.device) -> Run:
    """Model on ``device`` (identical on every rank), AdamW without decay on biases/LayerNorm, warm-up + linear decay."""
    rank, size = world()
    torch.manual_seed(cfg.seed)
    encoder = BiEncoder.from_pretrained(cfg.model, cfg.max_seq_length, cfg.scoring_config()).to(device)
    encoder.train()
    broadcast_module(encoder)
    decay = [p for p in encoder.parameters() if p.ndim > 1]
    no_decay = [p for p in encoder.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    schedule = plan_schedule(data.cls, cfg.global_batch_size, cfg.seed, cfg.epochs, cfg.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule.total, cfg.warmup_ratio))
    return Run(cfg, data, encoder, optimizer, scheduler, schedule, device, autocast_for(device, cfg.bf16), rank, size)


def resume(run: Run, checkpoint_dir: Path) -> LoopState:
    """Weights, optimiser and schedule from a checkpoint; the loop state from its meta."""
    meta = load_checkpoint(checkpoint_dir, run.encoder, run.optimizer, run.scheduler)
    if meta["global_batch_size"] != run.cfg.global_batch_size:
        raise RuntimeError(
            f"checkpoint was trained with global batch {meta['global_batch_size']}, this run has "
            f"{run.cfg.global_batch_size}: use a new --name or the same workers x batch size"
        )
    state = LoopState(meta["step"], meta["history"], meta.get("last_val"), meta.get("best"), meta.get("resumes", []) + [meta["step"]])
    if run.rank == 0:
        _log(f"resumed from checkpoint at step {state.step}")
    return state


def train_step(run: Run, state: LoopState) -> float:
    """One optimiser step on this step's global batch; returns the global loss."""
    cfg = run.cfg
    epoch, step_in_epoch = run.schedule.locate(state.step)
    torch.manual_seed(hash((cfg.seed, state.step, run.rank)) & 0x7FFF_FFFF)  # dropout: same on a resumed run
    batch = global_batch(run.data, run.schedule.plans[epoch], cfg, epoch, step_in_epoch)
    loss = compute_gradients(run.encoder, batch, cfg.batch_size, cfg.scale, cfg.symmetric, cfg.gradcache_chunk, run.autocast)
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(run.encoder.parameters(), cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    return loss


def validate_and_checkpoint(run: Run, state: LoopState, loss: float, meter: Meter, report: Report) -> None:
    """Rank 0 validates; every rank reports the metrics, rank 0 with the checkpoint."""
    entry: dict[str, Any] = {"step": state.step, "loss": loss}
    if run.rank == 0 and run.data.val_benchmarks:
        t0 = time.perf_counter()
        state.last_val = {"step": state.step, **validate(run.encoder, run.data)}
        entry["val_rp5"] = state.last_val["val_rp5"]
        if state.best is None or entry["val_rp5"] > state.best["val_rp5"]:
            state.best = {"step": state.step, "val_rp5": entry["val_rp5"]}
        per_set = ", ".join(f"{k[4:-4].upper()} {v:.2f}" for k, v in state.last_val.items() if k.startswith("val_") and k != "val_rp5")
        _log(
            f"validation at step {state.step}: RP@5 {entry['val_rp5']:.2f} ({per_set}) "
            f"best {state.best['val_rp5']:.2f} at step {state.best['step']} [{time.perf_counter() - t0:.1f} s]"
        )
    if state.history and state.history[-1]["step"] == state.step:
        state.history[-1].update(entry)  # the logged step is also a validation step
    else:
        state.history.append(entry)
    checkpoint(run, state, loss, meter, report)


def checkpoint(run: Run, state: LoopState, loss: float, meter: Meter, report: Report) -> None:
    """Metrics (peak memory: max over ranks) and, from rank 0, the checkpoint dir, through ``report``."""
    epoch = run.schedule.locate(state.step - 1)[0] if state.step else 0
    metrics: dict[str, Any] = {
        "step": state.step, "epoch": epoch, "loss": loss, "samples_per_s": meter.samples_per_s(),
        "peak_mem_mb": allreduce_max(peak_memory_mb(run.device), run.device),
        "mem_before_training_mb": meter.mem_before_training_mb,  # rank 0's
    }
    if run.rank == 0 and state.last_val is not None and state.last_val["step"] == state.step:
        metrics.update({k: v for k, v in state.last_val.items() if k != "step"})
    meta = {"epoch": epoch, "global_batch_size": run.cfg.global_batch_size, "metrics": metrics, **asdict(state)}
    with tempfile.TemporaryDirectory() as tmp:
        if run.rank == 0:
            save_checkpoint(Path(tmp), run.encoder, run.optimizer, run.scheduler, meta)
        report(metrics, Path(tmp) if run.rank == 0 else None)


def log_progress(run: Run, state: LoopState, loss: float, meter: Meter) -> None:
    cfg, total = run.cfg, run.schedule.total
    rate = meter.samples / (time.perf_counter() - meter.started)
    eta = (total - state.step) * cfg.global_batch_size / rate
    epoch = run.schedule.locate(state.step - 1)[0]
    val = f" | val RP@5 {state.last_val['val_rp5']:.1f} (step {state.last_val['step']})" if state.last_val else ""
    publish({"skilltrain_samples_per_s": rate, "skilltrain_loss": loss, "skilltrain_step": state.step}, cfg.run_name)
    _log(
        f"step {state.step}/{total} epoch {epoch + 1}/{cfg.epochs} | loss {loss:.4f} (ema {meter.loss_ema:.4f}) "
        f"| lr {run.scheduler.get_last_lr()[0]:.2e} | {rate:.1f} samples/s | ETA {_fmt_eta(eta)}{val}"
    )


def train(run: Run, state: LoopState, report: Report) -> None:
    """Steps until the schedule ends; validation + checkpoint every ``eval_every`` steps and at the last."""
    cfg, total = run.cfg, run.schedule.total
    meter = Meter(peak_memory_mb(run.device))  # model loaded, data in memory, no step taken
    if run.rank == 0:
        lengths = [len(p) for p in run.schedule.plans]
        _log(
            f"{run.size} worker(s) x batch {cfg.batch_size} = global batch {cfg.global_batch_size}; "
            f"{lengths[0]} steps/epoch ({run.schedule.plans[0].dropped} pairs left out of epoch 1), {total} steps; "
            f"device {run.device.type}{' bf16' if run.autocast is not contextlib.nullcontext else ''}; "
            f"GradCache chunk {cfg.gradcache_chunk or 'off'}; hard negatives {cfg.hard_negatives or 'off'}; "
            f"validation {'on ' + ','.join(cfg.val_sets) if run.data.val_benchmarks else 'off'}"
        )
    if state.step >= total and state.history:  # rerun of a finished run: report the final state again, train nothing
        checkpoint(run, state, state.history[-1]["loss"], meter, report)
        return
    while state.step < total:
        loss = train_step(run, state)
        meter.update(cfg.global_batch_size, loss)
        if state.step % cfg.log_every == 0 or state.step == total:
            state.history.append({"step": state.step, "loss": loss})  # the report's training curve (kept in checkpoints)
            if run.rank == 0:
                log_progress(run, state, loss, meter)
        if state.step % cfg.eval_every == 0 or state.step == total:
            validate_and_checkpoint(run, state, loss, meter, report)


# ---- Ray Train -------------------------------------------------------------------


def ray_report(metrics: dict, checkpoint_dir: Path | None) -> None:
    import ray.train

    checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
    ray.train.report(metrics, checkpoint=checkpoint)


def train_loop_per_worker(loop_config: dict, report: Report = ray_report) -> None:
    """Ray Train entry point: ``{"config": TrainConfig.to_json(), "data": ObjectRef[TrainData]}``."""
    import ray
    import ray.train
    import ray.train.torch

    from skilltrain.config import TrainConfig

    cfg = TrainConfig.from_json(loop_config["config"])
    data = loop_config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    run = setup(cfg, data, ray.train.torch.get_device())
    state = LoopState()
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as directory:
            state = resume(run, Path(directory))
    train(run, state, report)
