"""Shared by the training tests: a synthetic loss batch and its gradients, the tiny fit inputs and config, an
injected worker failure."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import synthetic_skill_rows, write_esco_csv, write_run_dir
from skilltrain.config import TrainConfig
from skilltrain.training.augment import NO_PARTNER, AugmentedBatch

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
    import torch

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


def fail_once_before_report(metrics: dict, checkpoint_dir, marker: str, at_step: int) -> None:
    """The last worker dies once just before reporting step ``at_step`` (runs inside a Ray Train worker)."""
    from skilltrain.training.distributed import world
    from skilltrain.training.train import ray_report

    rank, size = world()
    if metrics["step"] == at_step and rank == size - 1 and not Path(marker).exists():
        Path(marker).write_text("failed once\n")
        raise RuntimeError(f"injected failure before the step-{at_step} report (test)")
    ray_report(metrics, checkpoint_dir)
