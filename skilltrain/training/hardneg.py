"""Mined hard negatives: the skills the start model confuses with each pair's skill.

In-batch negatives are random skills, mostly easy ones ("welding" vs
"payroll"). The paper's recipe never shows the model the near misses it gets
wrong at extraction time ("operate forklift" vs "drive forklift"). Here every
class (skill label) gets its ``pool`` nearest other labels by the *start*
model's label embeddings, mined once before training; each step then draws
``k`` of them per pair as extra label columns of the loss (see
:func:`skilltrain.training.loss.contrastive_loss`).

Never mined as a negative: the class itself, and any class whose label is one
of the skill's own alternative labels (the taxonomy says they are the same
thing). The per-step false negatives (an augmentation partner's class) are
masked in the loss, like in-batch ones.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from skilltrain.evaluation.metrics import top_k_indices


def own_label_classes(class_labels: Sequence[str], alt_labels: Mapping[str, Sequence[str]]) -> list[set[int]]:
    """Per class, the other classes that name the same skill: one's label is the other's alternative label.

    Symmetric (case-insensitive): if B's label is an alternative label of A, neither is the other's negative.
    """
    by_text = {label.lower(): c for c, label in enumerate(class_labels)}
    out: list[set[int]] = [set() for _ in class_labels]
    for c, label in enumerate(class_labels):
        for alt in alt_labels.get(label, ()):
            other = by_text.get(alt.lower())
            if other is not None and other != c:
                out[c].add(other)
                out[other].add(c)
    return out


def mine(embeddings: np.ndarray, pool: int, exclude: Sequence[set[int]] = (), block: int = 2048) -> np.ndarray:
    """(n_classes, pool) class ids of each class's nearest other classes, nearest first.

    ``embeddings``: unit-norm label embeddings, one row per class. ``exclude[c]``: classes
    never mined for ``c`` (besides ``c`` itself). Blocked so memory stays ``block x n``.
    """
    n = embeddings.shape[0]
    if not 0 < pool < n:
        raise ValueError(f"hard-negative pool {pool} must be between 1 and {n - 1} (classes - 1)")
    table = np.empty((n, pool), dtype=np.int64)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        sims = embeddings[rows] @ embeddings.T
        sims[np.arange(len(rows)), rows] = -np.inf
        for r, c in enumerate(rows):
            if exclude and exclude[c]:
                sims[r, list(exclude[c])] = -np.inf
        table[rows] = top_k_indices(sims, pool)
    return table


def mine_for_labels(encoder, class_labels: Sequence[str], alt_labels: Mapping[str, Sequence[str]], pool: int) -> np.ndarray:
    """:func:`mine` on ``encoder``'s embeddings of the class labels (the start model, before training)."""
    embeddings = encoder.encode(list(class_labels), batch_size=256)
    return mine(embeddings, pool, own_label_classes(class_labels, alt_labels))


def draw(table: np.ndarray, batch_cls: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(B, k) class ids: ``k`` distinct mined negatives per row, drawn from its class's row of ``table``."""
    candidates = table[batch_cls]
    order = rng.random(candidates.shape).argsort(axis=1)[:, :k]
    return np.take_along_axis(candidates, order, axis=1)
