"""Validation during training: the score ``skilltrain eval`` gives, with the label encoding shared by all ranks.

Every validation ranks all 13,896 ESCO skills, so it encodes every label: ~34-80 s on
a 2-core CPU when rank 0 did it alone while the other ranks waited. Here each rank
encodes every ``size``-th batch of the labels, in the order and batch size
:meth:`BiEncoder.encode` uses for the whole list (labels sorted by length, batches of
:data:`LABEL_BATCH`), so each batch, and therefore each embedding, is the one a
single process computes; the shares are gathered and rank 0 scores the benchmarks
through the evaluation code's own path (:func:`skilltrain.evaluation.evaluate.evaluate`
with the gathered :class:`~skilltrain.ranking.SkillIndex`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from skilltrain.model import BiEncoder
from skilltrain.ranking import SkillIndex, column_values
from skilltrain.training.distributed import gather_rows, world

#: labels per encoding batch: SkillIndex.build's default, so the batches match ``skilltrain eval``'s
LABEL_BATCH = 256


def shared_label_embeddings(encoder: BiEncoder, labels: Sequence[str], batch_size: int = LABEL_BATCH) -> np.ndarray:
    """Unit-norm embeddings of ``labels`` (in their order), each rank encoding an equal share of the batches."""
    rank, size = world()
    if size == 1:
        return encoder.encode(labels, batch_size=batch_size)
    order = np.argsort([-len(t) for t in labels], kind="stable")  # BiEncoder.encode's order
    batches = [order[i : i + batch_size] for i in range(0, len(labels), batch_size)]
    mine = batches[rank::size]
    rows = np.concatenate(mine) if mine else np.zeros(0, dtype=np.int64)
    # a length-sorted subsequence stays in order under encode's stable sort, so its batches are the same batches
    emb = encoder.encode([labels[i] for i in rows], batch_size=batch_size) if len(rows) else np.zeros((0, encoder.dim), np.float32)
    parts = gather_rows(torch.from_numpy(emb).to(encoder.device))
    out = np.empty((len(labels), encoder.dim), dtype=np.float32)
    for r, part in enumerate(parts):
        owned = batches[r::size]
        if owned:
            out[np.concatenate(owned)] = part.cpu().numpy()
    return out


def validation_index(encoder: BiEncoder, skills) -> SkillIndex:
    """The skill index of ``skills`` for these weights, built by all ranks together (a collective)."""
    return SkillIndex(skills, shared_label_embeddings(encoder, column_values(skills, "label")))
