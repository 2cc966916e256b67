"""Shared by the training tests: a synthetic loss batch and its gradients (one process, or two gloo ranks on
loopback), the tiny inputs and configs of the Ray fit tests and of the in-process loop tests, an injected
worker failure."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from conftest import synthetic_skill_rows, write_benchmarks, write_esco_csv, write_run_dir
from helpers.ports import free_port
from skilltrain.config import TrainConfig
from skilltrain.training.augment import NO_PARTNER, AugmentedBatch

CPU = torch.device("cpu")

TOPICS = ["welding", "payroll", "kubernetes", "pastry", "forklift", "audit", "python", "nursing"]


def make_batch(n: int = 16, seed: int = 0, negatives: int = 0) -> AugmentedBatch:
    """``n`` pairs of distinct skills, half joined to a partner; ``negatives`` hard-negative labels per row."""
    rng = np.random.default_rng(seed)
    texts = [f"we need someone with {TOPICS[i % 8]} experience, level {i} {'and a car' * (i % 3)}" for i in range(n)]
    labels = [f"{TOPICS[i % 8]} skill number {i}" for i in range(n)]
    cls = np.arange(n, dtype=np.int64)
    partner = np.where(rng.random(n) < 0.5, rng.integers(0, n, n), NO_PARTNER).astype(np.int64)
    partner[partner == cls] = NO_PARTNER
    neg_cls = rng.integers(0, 2 * n, n * negatives).astype(np.int64)  # some in the batch (masked when own/partner)
    neg_texts = [f"{TOPICS[c % 8]} skill number {c}" for c in neg_cls]
    return AugmentedBatch(texts, labels, cls, partner, neg_texts, neg_cls)


def compute_gradients(encoder, batch: AugmentedBatch, batch_size: int, scale: float = 20.0, symmetric: bool = True,
                      gradcache_chunk: int = 0, autocast=contextlib.nullcontext) -> float:
    """The trainer's step (:func:`skilltrain.training.train.step_gradients`) on an augmented global batch,
    tokenising this rank's rows here instead of through the loader; returns the loss."""
    from skilltrain.training.distributed import world
    from skilltrain.training.gradcache import tokenize
    from skilltrain.training.loader import StepBatch
    from skilltrain.training.train import step_gradients

    rank, _ = world()
    rows = slice(rank * batch_size, (rank + 1) * batch_size)
    k = len(batch.negatives) // len(batch.texts)
    texts = [batch.texts[rows], batch.labels[rows]] + ([batch.negatives[rows.start * k : rows.stop * k]] if k else [])

    def as_tensor(a):
        return torch.as_tensor(np.asarray(a, dtype=np.int64))

    step_batch = StepBatch(0, [tokenize(encoder, t) for t in texts], as_tensor(batch.cls), as_tensor(batch.partner_cls),
                           as_tensor(batch.neg_cls))
    return step_gradients(encoder, step_batch, scale, symmetric, gradcache_chunk, autocast)


def grads_of(encoder) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in encoder.named_parameters() if p.grad is not None}


def _encoder(model_dir, scoring=None):
    from skilltrain.model import BiEncoder

    return BiEncoder.from_pretrained(model_dir, scoring=scoring).eval()  # eval: no dropout, one function on every rank


def one_process_gradients(model_dir, batch: AugmentedBatch, chunk: int = 0, scoring=None) -> tuple[float, dict]:
    """Loss and gradients of the whole batch in this process (``scoring``: None is the encoder dir's own)."""
    encoder = _encoder(model_dir, scoring)
    loss = compute_gradients(encoder, batch, len(batch.texts), 20.0, True, chunk)
    return loss, grads_of(encoder)


def _gradient_rank(rank: int, world: int, port: int, model_dir: str, out_dir: str, chunk: int, scoring) -> None:
    """One gloo rank (torch.multiprocessing.spawn): its share of each batch, saved for the parent to compare."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for negatives in (0, 2):  # the in-batch pool alone, and with gathered hard-negative columns
            batch = make_batch(negatives=negatives)
            encoder = _encoder(model_dir, scoring)
            loss = compute_gradients(encoder, batch, len(batch.texts) // world, 20.0, True, chunk)
            torch.save({"loss": loss, "grads": grads_of(encoder)}, Path(out_dir) / f"rank{rank}-neg{negatives}.pt")
    finally:
        dist.destroy_process_group()


def assert_two_ranks_equal_one_process(model_dir: Path, out_dir: Path, chunk: int, scoring=None) -> None:
    """Two gloo ranks with GradCache chunks of ``chunk``: each rank's loss and gradients equal one process on
    the concatenated batch (to 1e-5), with and without hard negatives."""
    import torch.multiprocessing as mp

    mp.spawn(_gradient_rank, args=(2, free_port(), str(model_dir), str(out_dir), chunk, scoring), nprocs=2, join=True)
    for negatives in (0, 2):
        ref_loss, ref = one_process_gradients(model_dir, make_batch(negatives=negatives), scoring=scoring)
        for rank in range(2):
            got = torch.load(out_dir / f"rank{rank}-neg{negatives}.pt")
            assert abs(got["loss"] - ref_loss) < 1e-5
            assert got["grads"].keys() == ref.keys()
            diff = max((got["grads"][k] - ref[k]).abs().max().item() for k in ref)
            assert diff < 1e-5, f"rank {rank}, {negatives} hard negatives: max abs grad diff {diff}"


N_SKILLS = 24


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A synthetic taxonomy, a run dir with 3 sentences per skill, and TECH/HOUSE files on its labels."""
    base = tmp_path_factory.mktemp("fit_inputs")
    rows = synthetic_skill_rows(N_SKILLS)
    esco = write_esco_csv(base / "skills_en.csv", rows)
    labels = [r[1] for r in rows]
    run = write_run_dir(base / "run", labels)
    bench = base / "benchmarks"
    bench.mkdir()
    for name in ("tech", "house"):
        for split in ("validation", "test"):
            pl.DataFrame(
                {"sentence": [f"Applicants {labels[i]} daily." for i in range(0, N_SKILLS, 3)], "label": labels[0:N_SKILLS:3]}
            ).write_csv(bench / f"{name}_{split}.csv")
    return {"esco": esco, "run": run, "bench": bench}


def make_config(inputs, tiny_encoder_dir, tmp_path, **kw) -> TrainConfig:
    base = dict(
        data=inputs["run"], out=tmp_path / "model", model=tiny_encoder_dir, esco=inputs["esco"],
        benchmark_dir=inputs["bench"], workers=2, batch_size=4, epochs=1, lr=1e-3, eval_every=4,
        log_every=2, storage_path=tmp_path / "ray", seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def loop_inputs(tmp_path_factory) -> dict[str, Path]:
    """The in-process loop tests' inputs: a synthetic taxonomy, a run dir and TECH/HOUSE files on every third label."""
    base = tmp_path_factory.mktemp("loop_inputs")
    rows = synthetic_skill_rows(N_SKILLS)
    labels = [r[1] for r in rows]
    return {
        "esco": write_esco_csv(base / "skills_en.csv", rows),
        "run": write_run_dir(base / "run", labels),
        "bench": write_benchmarks(base / "benchmarks", labels[::3]),
    }


def loop_config(inputs, model_dir, tmp_path, **kw) -> TrainConfig:
    """A config for the training loop in this process (no Ray): one large batch, no validation unless asked."""
    base = dict(data=inputs["run"], out=tmp_path / "model", model=model_dir, esco=inputs["esco"], benchmark_dir=inputs["bench"],
                batch_size=10, lr=1e-3, eval_every=1000, log_every=1000)
    return TrainConfig(**{**base, **kw})


def fail_once_before_report(metrics: dict, checkpoint_dir, marker: str, at_step: int) -> None:
    """The last worker dies once just before reporting step ``at_step`` (runs inside a Ray Train worker)."""
    from skilltrain.training.distributed import world
    from skilltrain.training.train import ray_report

    rank, size = world()
    if metrics["step"] == at_step and rank == size - 1 and not Path(marker).exists():
        Path(marker).write_text("failed once\n")
        raise RuntimeError(f"injected failure before the step-{at_step} report (test)")
    ray_report(metrics, checkpoint_dir)
