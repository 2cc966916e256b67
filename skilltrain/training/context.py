"""What every step of a worker's loop reads: the shipped data, the run built by ``setup``, each step's global batch.

Its own module so that the loop (:mod:`skilltrain.training.train`) and the input
pipeline (:mod:`skilltrain.training.loader`) both read it without importing each other.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from skilltrain.model import BiEncoder
from skilltrain.training import hardneg
from skilltrain.training.augment import AugmentedBatch, augment_batch, step_rng
from skilltrain.training.sampler import Schedule

if TYPE_CHECKING:  # pydantic stays out of the import path of one-GPU scripts that use the step code
    from skilltrain.config import TrainConfig

__all__ = ["TrainData", "Run", "global_batch"]


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
    threads: int = 1  # torch threads of this worker (its share of the node's CPUs)
    peak_flops: float = 0.0  # the device's peak for the compute dtype (CPU: a measured matmul rate)
    peak_source: str = ""
    setup_s: float = 0.0  # model load, optimiser, plan, peak measurement
    chunk: int = 0  # the GradCache chunk in use (cfg's, or sized from free memory)


def global_batch(data: TrainData, plan, cfg: "TrainConfig", epoch: int, step_in_epoch: int) -> AugmentedBatch:
    """The augmented global batch of this step, with its hard negatives if any; identical on every rank."""
    idx = plan.batches[step_in_epoch]
    batch = augment_batch(idx, data.sentences, data.labels, data.cls, data.partner_pool, cfg.augment_prob, step_rng(cfg.seed, epoch, step_in_epoch))
    if not cfg.hard_negatives or data.hard_negatives is None:
        return batch
    rng = np.random.default_rng([cfg.seed, 2, epoch, step_in_epoch])  # own stream: augmentation stays as without
    neg_cls = hardneg.draw(data.hard_negatives, batch.cls, cfg.hard_negatives, rng).reshape(-1)
    return AugmentedBatch(batch.texts, batch.labels, batch.cls, batch.partner_cls, [data.class_labels[c] for c in neg_cls], neg_cls)
