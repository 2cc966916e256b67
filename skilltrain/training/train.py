"""The per-worker training loop (runs inside each Ray Train worker).

Read top to bottom: :func:`setup` (model, optimiser, schedule), :func:`resume`
(from a checkpoint dir), then :func:`train`: :func:`train_step` on the batches
the background loader (:mod:`skilltrain.training.loader`) builds ahead, until the
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
import logging
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

from skillgen.common import publish
from skilltrain.model import BiEncoder
from skilltrain.ranking import SkillIndex
from skilltrain.training.distributed import allreduce_gradients, allreduce_max, allreduce_sum, broadcast_module, world
from skilltrain.training.gradcache import AUTO_CHUNK, chunk_for_memory, forward_backward
from skilltrain.training.context import Run, TrainData, global_batch  # noqa: F401 (re-exported for callers)
from skilltrain.training.loader import StepBatch, loader_for
from skilltrain.training.throughput import model_shape, peak_flops, train_flops
from skilltrain.training.validation import validation_index
from skilltrain.training.loss import loss_fn_for
from skilltrain.training.sampler import plan_schedule

if TYPE_CHECKING:  # pydantic stays out of the import path of one-GPU scripts that use the step code
    from skilltrain.config import TrainConfig

STATE_FILE = "train_state.pt"
META_FILE = "meta.json"
LABEL_EMBEDDINGS_FILE = "label_embeddings.npy"  # the validation skill index of the checkpoint's weights

Report = Callable[[dict, "Path | None"], None]  # (metrics, checkpoint dir on rank 0 / None) -> None


# ---- one step -----------------------------------------------------------------


def step_gradients(
    encoder: BiEncoder,
    batch: StepBatch,
    scale: float = 20.0,
    symmetric: bool = True,
    gradcache_chunk: int = 0,
    autocast=contextlib.nullcontext,
) -> float:
    """Accumulate this rank's gradients for its share of a global batch and SUM them over ranks.

    Afterwards every rank holds the gradient of the global-batch loss, exactly as a
    single process on the whole batch would. Returns the global loss (the one host
    sync of the step, after all chunks).
    """
    loss_fn = loss_fn_for(encoder, batch.groups, batch.cls, batch.partner_cls, batch.neg_cls, scale, symmetric)
    local_loss = forward_backward(encoder, batch.groups, loss_fn, gradcache_chunk, autocast)
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


def validate(encoder: BiEncoder, data: TrainData, index: SkillIndex | None = None) -> dict[str, float]:
    """Mean RP@5 per validation set (one skill index for all sets, built here unless given) and their mean."""
    from skilltrain.evaluation.evaluate import evaluate

    reports = evaluate(encoder, data.val_skills, data.val_benchmarks, index=index, ci=False)
    out = {f"val_{name}_rp5": report.means()["RP@5"] for name, report in reports.items()}
    out["val_rp5"] = float(np.mean(list(out.values())))
    return out


def save_checkpoint(directory: Path, encoder, optimizer, scheduler, meta: dict, label_embeddings: np.ndarray | None = None) -> None:
    """Weights, optimiser, schedule, meta; and the skill embeddings of these weights when this step validated
    (the driver's test evaluation of the exported checkpoint then need not encode all labels again)."""
    if label_embeddings is not None:
        np.save(directory / LABEL_EMBEDDINGS_FILE, label_embeddings)
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
class LoopState:
    """What a checkpoint carries besides the tensors; everything else is recomputed from the config."""

    step: int = 0
    history: list[dict] = field(default_factory=list)  # one entry per logged step: step, loss, and val_rp5 at validations
    #: every step's global loss, ``losses[s - 1]`` for step ``s`` (the report's training plot; None where a
    #: checkpoint of an older version did not keep them). ~10 bytes a step in the checkpoint's meta.json.
    losses: list[float | None] = field(default_factory=list)
    last_val: dict | None = None
    best: dict | None = None
    resumes: list[int] = field(default_factory=list)  # steps this run was resumed at


@dataclass
class Meter:
    """Throughput and model FLOPs (first, warm-up step excluded), input wait, loss EMA, memory before the first step.

    Validation and checkpoint time is excluded too: the rates are the training step's.
    """

    mem_before_training_mb: float
    started: float = field(default_factory=time.perf_counter)
    samples: int = 0
    flops: float = 0.0  # this rank's model FLOPs in the timed steps
    timed_s: float = 0.0  # wall time of the timed steps (input wait included)
    input_wait_s: float = 0.0  # of which: waiting for the loader
    first_step_done: bool = False
    loss_ema: float | None = None
    steps_s: float = 0.0  # all steps, the first included
    validation_s: float = 0.0

    def update(self, samples: int, loss: float, flops: float, step_s: float, wait_s: float) -> None:
        self.steps_s += step_s
        if self.first_step_done:
            self.samples, self.flops, self.timed_s, self.input_wait_s = self.samples + samples, self.flops + flops, self.timed_s + step_s, self.input_wait_s + wait_s
        self.first_step_done = True
        self.loss_ema = loss if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * loss

    def samples_per_s(self) -> float:
        return self.samples / self.timed_s if self.timed_s else 0.0

    def flops_per_s(self) -> float:
        return self.flops / self.timed_s if self.timed_s else 0.0


# ---- the loop ---------------------------------------------------------------------


def setup(cfg: "TrainConfig", data: TrainData, device: torch.device, threads: int | None = None) -> Run:
    """Model on ``device`` (identical on every rank), AdamW without decay on biases/LayerNorm, warm-up + linear decay.

    ``threads``: torch threads for this worker (None keeps the process's setting).
    """
    started = time.perf_counter()
    rank, size = world()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    encoder = BiEncoder.from_pretrained(cfg.model, cfg.max_seq_length, cfg.scoring_config()).to(device)
    encoder.train()
    broadcast_module(encoder)
    decay = [p for p in encoder.parameters() if p.ndim > 1]
    no_decay = [p for p in encoder.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=True)  # one kernel for all parameters (CPU and CUDA)
    schedule = plan_schedule(data.cls, cfg.global_batch_size, cfg.seed, cfg.epochs, cfg.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule.total, cfg.warmup_ratio))
    peak, source = peak_flops(device, cfg.bf16)
    chunk = cfg.gradcache_chunk
    if chunk == AUTO_CHUNK:
        texts = cfg.batch_size * max(1, cfg.hard_negatives)  # the largest group: hard negatives are k per pair
        chunk = chunk_for_memory(encoder, texts, device, cfg.bf16, sharing=size if device.type == "cpu" else 1)
    return Run(cfg, data, encoder, optimizer, scheduler, schedule, device, autocast_for(device, cfg.bf16), rank, size,
               torch.get_num_threads(), peak, source, time.perf_counter() - started, chunk)


def resume(run: Run, checkpoint_dir: Path) -> LoopState:
    """Weights, optimiser and schedule from a checkpoint; the loop state from its meta."""
    meta = load_checkpoint(checkpoint_dir, run.encoder, run.optimizer, run.scheduler)
    if meta["global_batch_size"] != run.cfg.global_batch_size:
        raise RuntimeError(
            f"checkpoint was trained with global batch {meta['global_batch_size']}, this run has "
            f"{run.cfg.global_batch_size}: use a new --name or the same workers x batch size"
        )
    step = meta["step"]
    losses = list(meta.get("losses", []))[:step]
    state = LoopState(
        step=step, history=meta["history"], losses=losses + [None] * (step - len(losses)),
        last_val=meta.get("last_val"), best=meta.get("best"), resumes=meta.get("resumes", []) + [step],
    )
    if run.rank == 0:
        _log(f"resumed from checkpoint at step {state.step}")
    return state


def train_step(run: Run, state: LoopState, batch: StepBatch) -> float:
    """One optimiser step on this step's batch (from the loader); returns the global loss."""
    cfg = run.cfg
    if batch.step != state.step:
        raise RuntimeError(f"loader out of step: batch for step {batch.step} at step {state.step}")
    torch.manual_seed(hash((cfg.seed, state.step, run.rank)) & 0x7FFF_FFFF)  # dropout: same on a resumed run
    loss = step_gradients(run.encoder, batch, cfg.scale, cfg.symmetric, run.chunk, run.autocast)
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(run.encoder.parameters(), cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.losses.append(round(loss, 6))
    return loss


def validate_and_checkpoint(run: Run, state: LoopState, loss: float, meter: Meter, report: Report) -> None:
    """All ranks encode the skill labels, rank 0 scores; every rank reports the metrics, rank 0 with the checkpoint."""
    entry: dict[str, Any] = {"step": state.step, "loss": loss}
    index = None
    if run.data.val_benchmarks:
        t0 = time.perf_counter()
        index = validation_index(run.encoder, run.data.val_skills)
    if run.rank == 0 and index is not None:
        state.last_val = {"step": state.step, **validate(run.encoder, run.data, index)}
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
    checkpoint(run, state, loss, meter, report, index.embeddings if index is not None else None)


def checkpoint(run: Run, state: LoopState, loss: float, meter: Meter, report: Report, label_embeddings: np.ndarray | None = None) -> None:
    """Metrics (peak memory: max over ranks) and, from rank 0, the checkpoint dir, through ``report``."""
    epoch = run.schedule.locate(state.step - 1)[0] if state.step else 0
    metrics: dict[str, Any] = {
        "step": state.step, "epoch": epoch, "loss": loss, "samples_per_s": meter.samples_per_s(),
        "peak_mem_mb": allreduce_max(peak_memory_mb(run.device), run.device),
        **utilisation(run, meter),
        "mem_before_training_mb": meter.mem_before_training_mb,  # rank 0's
        # where a run's time goes (rank 0's clock): worker setup, steps, validations
        "setup_s": run.setup_s, "steps_s": meter.steps_s, "validation_s": meter.validation_s,
    }
    if run.rank == 0 and state.last_val is not None and state.last_val["step"] == state.step:
        metrics.update({k: v for k, v in state.last_val.items() if k != "step"})
    meta = {"epoch": epoch, "global_batch_size": run.cfg.global_batch_size, "metrics": metrics, **asdict(state)}
    with tempfile.TemporaryDirectory() as tmp:
        if run.rank == 0:
            save_checkpoint(Path(tmp), run.encoder, run.optimizer, run.scheduler, meta, label_embeddings)
        report(metrics, Path(tmp) if run.rank == 0 else None)


def utilisation(run: Run, meter: Meter) -> dict[str, float]:
    """Model FLOP/s over all workers, over their summed peak (a collective: every rank calls it)."""
    achieved = allreduce_sum(meter.flops_per_s(), run.device)
    peak = allreduce_sum(run.peak_flops, run.device)
    return {"model_tflops": achieved / 1e12, "mfu": achieved / peak if peak else 0.0, "input_wait_share": meter.input_wait_s / meter.timed_s if meter.timed_s else 0.0}


def log_progress(run: Run, state: LoopState, loss: float, meter: Meter) -> None:
    cfg, total = run.cfg, run.schedule.total
    rate = meter.samples_per_s() or cfg.global_batch_size / max(1e-9, time.perf_counter() - meter.started)
    eta = (total - state.step) * cfg.global_batch_size / rate
    mfu = meter.flops_per_s() / run.peak_flops if run.peak_flops else 0.0
    epoch = run.schedule.locate(state.step - 1)[0]
    val = f" | val RP@5 {state.last_val['val_rp5']:.1f} (step {state.last_val['step']})" if state.last_val else ""
    publish({"skilltrain_samples_per_s": rate, "skilltrain_loss": loss, "skilltrain_step": state.step}, cfg.run_name)
    _log(
        f"step {state.step}/{total} epoch {epoch + 1}/{cfg.epochs} | loss {loss:.4f} (ema {meter.loss_ema:.4f}) "
        f"| lr {run.scheduler.get_last_lr()[0]:.2e} | {rate:.1f} samples/s, MFU {100 * mfu:.1f}% (rank 0) | ETA {_fmt_eta(eta)}{val}"
    )


def train(run: Run, state: LoopState, report: Report) -> None:
    """Steps until the schedule ends; validation + checkpoint every ``eval_every`` steps and at the last."""
    cfg, total = run.cfg, run.schedule.total
    meter = Meter(peak_memory_mb(run.device))  # model loaded, data in memory, no step taken
    if run.rank == 0:
        lengths = [len(p) for p in run.schedule.plans]
        _log(  # two lines: each stays readable behind Ray's "(RayTrainWorker pid=...)" prefix
            f"{run.size} worker(s) x batch {cfg.batch_size} = global batch {cfg.global_batch_size}; "
            f"{lengths[0]} steps/epoch ({run.schedule.plans[0].dropped} pairs left out of epoch 1), {total} steps; "
            f"validation {'on ' + ','.join(cfg.val_sets) if run.data.val_benchmarks else 'off'}"
        )
        _log(
            f"device {run.device.type}{' bf16' if run.autocast is not contextlib.nullcontext else ''}, "
            f"{run.threads} torch thread(s) per worker, peak {run.peak_flops / 1e12:.2f} TFLOP/s per worker ({run.peak_source}); "
            f"GradCache chunk {run.chunk or 'off'}{' (sized from free memory)' if cfg.gradcache_chunk == AUTO_CHUNK else ''}; "
            f"hard negatives {cfg.hard_negatives or 'off'}"
        )
    if state.step >= total and state.history:  # rerun of a finished run: report the final state again, train nothing
        checkpoint(run, state, state.history[-1]["loss"], meter, report)
        return
    shape = model_shape(run.encoder.transformer)
    with loader_for(run, state.step) as loader:
        batches = iter(loader)
        while state.step < total:
            started = time.perf_counter()
            batch = next(batches)
            waited = time.perf_counter() - started
            loss = train_step(run, state, batch)
            meter.update(cfg.global_batch_size, loss, train_flops(shape, batch.groups), time.perf_counter() - started, waited)
            if state.step % cfg.log_every == 0 or state.step == total:
                state.history.append({"step": state.step, "loss": loss})  # the report's training curve (kept in checkpoints)
                if run.rank == 0:
                    log_progress(run, state, loss, meter)
            if state.step % cfg.eval_every == 0 or state.step == total:
                started = time.perf_counter()
                validate_and_checkpoint(run, state, loss, meter, report)
                meter.validation_s += time.perf_counter() - started


# ---- Ray Train -------------------------------------------------------------------


def quiet_ray_reports() -> None:
    """Keep Ray Train's raw ``TrainingReport(checkpoint=..., metrics={...})`` lines off the console.

    Ray Train 2.60 logs every ``ray.train.report`` call of every worker as one INFO line of ~700
    characters, which Ray forwards to the driver's console. Its logger is named after the file
    (``logging.getLogger(__file__)`` in ``ray/train/v2/_internal/execution/context.py``), so
    ``RunConfig(logging_config=LoggingConfig(log_level=...))``, which filters ``ray.train.*`` names
    only, does not reach it. That INFO line is the logger's only one: raised to WARNING, its warnings
    and errors still show, and the loop's own progress lines say the same in one short line.
    """
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: nothing to quiet
        return
    reporter = getattr(context, "logger", None)
    if isinstance(reporter, logging.Logger):
        reporter.setLevel(max(reporter.level, logging.WARNING))


def ray_report(metrics: dict, checkpoint_dir: Path | None) -> None:
    import ray.train

    checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
    ray.train.report(metrics, checkpoint=checkpoint)


def worker_threads() -> int:
    """The CPUs Ray reserved for this worker: its torch threads (Ray's env alone would give a 1-CPU worker 1)."""
    import ray

    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


def train_loop_per_worker(loop_config: dict, report: Report = ray_report) -> None:
    """Ray Train entry point: ``{"config": TrainConfig.to_json(), "data": ObjectRef[TrainData]}``."""
    import ray
    import ray.train
    import ray.train.torch

    from skilltrain.config import TrainConfig

    quiet_ray_reports()
    cfg = TrainConfig.from_json(loop_config["config"])
    data = loop_config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    run = setup(cfg, data, ray.train.torch.get_device(), worker_threads())
    state = LoopState()
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as directory:
            state = resume(run, Path(directory))
    train(run, state, report)
