"""The paper's augmentation: join a sentence to a random sentence of another skill.

Real job ads mention several skills in a row, while each synthetic sentence
was written for one skill. Decorte et al. (2023) therefore join every training
sentence to one random sentence of a different skill, before or after it, and
keep the original skill as the positive. The partner's skill is now also
(legitimately) in the text, so it must not be used as a negative for that
anchor: :func:`augment_batch` returns the partner class per row and the loss
masks it (see :func:`skilltrain.training.loss.false_negative_mask`).

Randomness comes from ``(seed, epoch, step)`` only, and the whole *global*
batch is augmented identically on every rank, so a resumed run and a run with
a different number of workers at the same global batch see the same texts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

NO_PARTNER = -1


@dataclass(frozen=True)
class AugmentedBatch:
    texts: list[str]  # anchor texts (possibly joined with a partner sentence)
    labels: list[str]  # positive label text per row
    cls: np.ndarray  # class id of the positive, per row
    partner_cls: np.ndarray  # class id of the joined partner, NO_PARTNER if none
    negatives: list[str] = field(default_factory=list)  # mined hard-negative label texts, k per row, row-major
    neg_cls: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # their class ids


def augment_batch(
    idx: np.ndarray,
    sentences: Sequence[str],
    labels: Sequence[str],
    classes: np.ndarray,
    partner_pool: np.ndarray,
    prob: float,
    rng: np.random.Generator,
    max_tries: int = 16,
) -> AugmentedBatch:
    """Augment the pairs ``idx``; partners are drawn from ``partner_pool`` (pair indices)."""
    n = len(idx)
    texts = [sentences[i] for i in idx]
    partner_cls = np.full(n, NO_PARTNER, dtype=np.int64)
    joined = rng.random(n) < prob
    before = rng.random(n) < 0.5
    for row in np.flatnonzero(joined):
        own = classes[idx[row]]
        for _ in range(max_tries):
            j = int(partner_pool[rng.integers(len(partner_pool))])
            if classes[j] != own:
                break
        else:
            continue  # pool is (nearly) all one class: leave the sentence alone
        partner_cls[row] = classes[j]
        texts[row] = f"{sentences[j]} {texts[row]}" if before[row] else f"{texts[row]} {sentences[j]}"
    return AugmentedBatch(texts, [labels[i] for i in idx], np.asarray(classes)[idx].astype(np.int64), partner_cls)


def step_rng(seed: int, epoch: int, step_in_epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, 1, epoch, step_in_epoch])
