"""Skill-unique global batches, identical on every rank, sliced per rank.

With in-batch negatives, two pairs of the same skill in one batch would make
one pair's positive the other's negative (a false negative). Because the loss
gathers embeddings from all workers, "batch" means the *global* batch
(workers x per-worker batch), so the plan is made globally: every rank computes
the same plan from ``(seed, epoch)`` alone (no communication) and takes its
slice ``[rank * B, (rank + 1) * B)``. A resumed run recomputes the same plan
and skips the batches already done.

Greedy fill in a seeded random order: an item whose class is already in the
batch is deferred and tried first for the next batch. Items that cannot fill a
last complete batch (too few distinct classes left) are dropped for that epoch;
the plan reports how many, and they differ from epoch to epoch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchPlan:
    batches: np.ndarray  # (n_batches, global_batch) indices into the pair table
    dropped: int

    def __len__(self) -> int:
        return int(self.batches.shape[0])

    def local(self, step_in_epoch: int, rank: int, batch_size: int) -> np.ndarray:
        """This rank's slice of global batch ``step_in_epoch``."""
        return self.batches[step_in_epoch, rank * batch_size : (rank + 1) * batch_size]


def plan_epoch(classes: np.ndarray, global_batch: int, seed: int, epoch: int) -> BatchPlan:
    """Split a seeded permutation of all pairs into full batches with no repeated class."""
    classes = np.asarray(classes)
    n = len(classes)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    batches: list[list[int]] = []
    deferred: deque[int] = deque()
    ptr = 0
    while True:
        batch: list[int] = []
        seen: set[int] = set()
        skipped_old: list[int] = []
        while deferred and len(batch) < global_batch:
            i = deferred.popleft()
            c = int(classes[i])
            if c in seen:
                skipped_old.append(i)
            else:
                seen.add(c)
                batch.append(i)
        skipped_new: list[int] = []
        while ptr < n and len(batch) < global_batch:
            i = int(order[ptr])
            ptr += 1
            c = int(classes[i])
            if c in seen:
                skipped_new.append(i)
            else:
                seen.add(c)
                batch.append(i)
        deferred = deque(skipped_old + list(deferred) + skipped_new)
        if len(batch) < global_batch:
            dropped = len(batch) + len(deferred)
            break
        batches.append(batch)
    arr = np.asarray(batches, dtype=np.int64).reshape(len(batches), global_batch)
    return BatchPlan(arr, dropped)


@dataclass(frozen=True)
class Schedule:
    """Every epoch's plan and the run's step count: global step -> (epoch, step in epoch).

    Epochs can differ in length by a batch or so (the drop-out at the end of a plan
    depends on the shuffle), so a step's epoch is found from the real lengths, never
    as ``step // len(first plan)``; otherwise a shorter last epoch ends the run on a
    step that no validation or checkpoint sees.
    """

    plans: tuple[BatchPlan, ...]
    total: int

    def locate(self, step: int) -> tuple[int, int]:
        for epoch, plan in enumerate(self.plans):
            if step < len(plan):
                return epoch, step
            step -= len(plan)
        raise IndexError("step beyond the last epoch")


def plan_schedule(classes: np.ndarray, global_batch: int, seed: int, epochs: int, max_steps: int = 0) -> Schedule:
    """All epochs' plans (computed from ``(seed, epoch)``, so every rank and a resumed run agree)."""
    plans = tuple(plan_epoch(classes, global_batch, seed, epoch) for epoch in range(epochs))
    total = sum(len(p) for p in plans)
    return Schedule(plans, min(total, max_steps) if max_steps else total)
