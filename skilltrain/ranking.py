"""Rank every ESCO skill for a batch of sentences: the one code path shared by
evaluation and extraction, so a benchmark score is exactly what users get.

Pooled queries score every skill with one matmul. Token-attention queries
(:class:`~skilltrain.packed.PackedQueries`) are ranked either exhaustively
(:func:`~skilltrain.kernels.exhaustive_scores` on every skill) or in two stages
(:func:`two_stage_top_k`): the pooled vector of the same forward pass takes the
top C candidates from the same skill matrix, and token attention re-ranks only
those. C is the model's (chosen on validation, saved in its scoring config).

Skill embeddings are computed once per (model, taxonomy) and cached on disk
next to the model, keyed by the model's weights and the taxonomy's content
hash, because re-encoding 13,896 labels costs ~15 s on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from skillgen.common import write_atomic
from skilltrain.coverage import coverage_scores, diverse_order, window_candidates
from skilltrain.kernels import candidate_scores, exhaustive_scores, score_shares
from skilltrain.model import BiEncoder
from skilltrain.packed import PackedQueries, Queries
from skilltrain.scoring import TokenQueries

if TYPE_CHECKING:  # polars stays optional at run time for callers that pass an Arrow table (GPU benchmark hosts)
    import polars as pl
    import pyarrow as pa

log = logging.getLogger(__name__)

INDEX_DIR_NAME = "skill_index"
#: sentences scored per matmul: bounds the score block to RANK_CHUNK x n_skills (~57 MB fp32 for ESCO)
RANK_CHUNK = 1024
#: skills the coverage-aware top-k chooses among (the best this many by sentence score)
DIVERSE_POOL = 200
#: a two-stage score matrix puts every non-candidate below every candidate: pooled score minus this (scores are in [-1, 1])
NON_CANDIDATE_OFFSET = 4.0


def as_packed(queries: Queries) -> "torch.Tensor | PackedQueries":
    """Pooled vectors unchanged; token queries as :class:`PackedQueries` (padded ones are packed)."""
    return PackedQueries.from_padded(queries) if isinstance(queries, TokenQueries) else queries


def score_block(queries: "torch.Tensor | PackedQueries", matrix: torch.Tensor) -> torch.Tensor:
    """(n, S) scores of a block of queries (pooled unit vectors or packed token queries) against every skill row."""
    if isinstance(queries, PackedQueries):
        return exhaustive_scores(queries, matrix)
    return queries @ matrix.T.to(queries.dtype)


def model_fingerprint(model_dir: Path) -> str:
    """Cheap identity of a model directory's weights: names, sizes and mtimes."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(model_dir)):
        p = model_dir / name
        if p.is_file() and (name.endswith((".safetensors", ".bin", ".json"))):
            st = p.stat()
            h.update(f"{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def texts_fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def column_values(table: "pl.DataFrame | pa.Table", name: str) -> list:
    """One column as a Python list, from a polars frame or a pyarrow table."""
    column = table[name]
    return column.to_list() if hasattr(column, "to_list") else column.to_pylist()


@dataclass
class SkillIndex:
    """Unit-norm skill embeddings aligned with ``skills`` rows (columns ``skill_id``, ``label``)."""

    skills: "pl.DataFrame | pa.Table"
    embeddings: np.ndarray

    @classmethod
    def build(
        cls,
        encoder: BiEncoder,
        skills: "pl.DataFrame | pa.Table",
        cache_dir: str | Path | None = None,
        cache_key: str = "",
        batch_size: int = 256,
        progress: bool = False,
    ) -> "SkillIndex":
        labels = column_values(skills, "label")
        key = hashlib.sha256(f"{cache_key}:{texts_fingerprint(labels)}:{encoder.max_seq_length}".encode()).hexdigest()[:20]
        cached = Path(cache_dir) / INDEX_DIR_NAME / f"{key}.npy" if cache_dir is not None else None
        if cached is not None and cached.exists():
            emb = np.load(cached)
            if emb.shape == (len(labels), encoder.dim):
                return cls(skills, emb)
        emb = encoder.encode(labels, batch_size=batch_size, progress=progress, desc="encoding skills")
        if cached is not None:
            try:
                write_atomic(cached, lambda tmp: _save_npy(tmp, emb))
                (cached.parent / f"{key}.json").write_text(json.dumps({"cache_key": cache_key, "n_skills": len(labels)}))
            except OSError as exc:  # a read-only model dir (site-packages) only loses the cache
                log.debug("skill index not cached in %s: %s", cached.parent, exc)
        return cls(skills, emb)

    def scores(self, queries: "np.ndarray | Queries", candidates: int | None = None) -> np.ndarray:
        """(n, n_skills) score of each sentence against every skill, under the queries' scoring.

        Pooled unit vectors (a numpy array or tensor): cosine similarity. Token queries: token attention
        on every skill, or, given ``candidates`` (fewer than the skills), the ranking two-stage
        extraction serves: its C candidates carry their token-attention scores and every other skill
        its pooled score minus :data:`NON_CANDIDATE_OFFSET`, so any metric over the whole ranking
        (MRR) sees the candidates first, in the re-ranked order, then the rest in pooled order.
        """
        if isinstance(queries, np.ndarray):
            return np.asarray(queries, dtype=np.float32) @ self.embeddings.T
        queries = as_packed(queries)
        matrix = torch.from_numpy(self.embeddings)
        out = np.empty((len(queries), matrix.shape[0]), dtype=np.float32)
        for start in range(0, len(queries), RANK_CHUNK):
            block = queries[start : start + RANK_CHUNK]
            if isinstance(block, PackedQueries) and candidates and candidates < matrix.shape[0]:
                out[start : start + RANK_CHUNK] = two_stage_scores(block, matrix, candidates).numpy()
            else:
                out[start : start + RANK_CHUNK] = score_block(block, matrix).float().numpy()
        return out

    def top_k(self, queries: "np.ndarray | Queries", k: int, candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) of the k best skills per sentence, best first (two-stage given ``candidates``)."""
        queries = torch.from_numpy(queries) if isinstance(queries, np.ndarray) else queries
        idx, scores = top_k(queries, torch.from_numpy(self.embeddings), k, candidates)
        return idx.numpy(), scores.numpy()


def top_k(queries: Queries, matrix: torch.Tensor, k: int, candidates: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, scores) of the ``k`` best skills per query, best first: two-stage when token queries and
    ``candidates`` (< the skills) are given, else exhaustive (:func:`top_k_chunked`)."""
    queries = as_packed(queries)
    if isinstance(queries, PackedQueries) and candidates and candidates < matrix.shape[0]:
        return two_stage_top_k(queries, matrix, k, candidates)
    return top_k_chunked(queries, matrix, k)


@dataclass
class TokenRanking:
    """The k best skills of token-attention queries: ``idx``/``scores`` (n, k) in ranked order, and ``shares`` (T, k):
    each token's share of each chosen skill's score, packed like the queries (evidence comes from it)."""

    idx: torch.Tensor
    scores: torch.Tensor
    shares: torch.Tensor


def rank_tokens(queries: PackedQueries, matrix: torch.Tensor, k: int, candidates: int | None = None,
                diversity: float | None = None, pool: int = DIVERSE_POOL) -> TokenRanking:
    """Top ``k`` (two-stage given ``candidates``); coverage-aware (:mod:`skilltrain.coverage`) among the best ``pool``
    and each window's own best skills when ``diversity`` is a strength (None: plain top-k). Scores stay sentence
    scores (token attention over the whole sentence); only the order changes."""
    width = max(k, min(pool, candidates or pool)) if diversity is not None else k  # two-stage: the pool is within the C
    idx, scores = top_k(queries, matrix, width, candidates)
    if diversity is not None and len(queries):
        idx, scores, repeated = with_window_candidates(queries, matrix, idx, scores)
        coverage = coverage_scores(queries, matrix, idx, scores).masked_fill(repeated, float("-inf"))
        order = diverse_order(coverage, matrix, idx, k, diversity)
        idx, scores = torch.gather(idx, 1, order), torch.gather(scores, 1, order)
    idx, scores = idx[:, :k], scores[:, :k]
    return TokenRanking(idx, scores, score_shares(queries, matrix, idx))


def with_window_candidates(queries: PackedQueries, matrix: torch.Tensor, idx: torch.Tensor, scores: torch.Tensor,
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pool ``idx``/``scores`` (n, m) widened by each window's own best skills
    (:func:`~skilltrain.coverage.window_candidates`) with their token-attention sentence scores, and (n, m') True where
    a skill is already earlier in its row (the coverage-aware top-k must not take it twice)."""
    extra = window_candidates(queries, matrix)
    if not extra.shape[1]:
        return idx, scores, torch.zeros(idx.shape, dtype=torch.bool, device=idx.device)
    extra = torch.where(extra < 0, idx[:, :1], extra)  # a short sentence's unused slots repeat its best skill
    idx = torch.cat([idx, extra], dim=1)
    scores = torch.cat([scores, candidate_scores(queries, matrix, extra).to(scores.dtype)], dim=1)
    ordered, order = torch.sort(idx, dim=1, stable=True)  # stable: the first occurrence of a skill stays unmarked
    repeated = torch.zeros(idx.shape, dtype=torch.bool, device=idx.device)
    repeated.scatter_(1, order[:, 1:], ordered[:, 1:] == ordered[:, :-1])
    return idx, scores, repeated


def pooled_scores(queries: PackedQueries, matrix: torch.Tensor) -> torch.Tensor:
    """(n, S) cosine of each sentence's pooled vector (same forward pass as its tokens) with every skill."""
    if queries.pooled is None:
        raise ValueError("two-stage ranking needs the pooled vectors of the same forward pass (PackedQueries.pooled)")
    return queries.pooled.to(matrix.dtype) @ matrix.T


def pooled_candidates(pooled: torch.Tensor, candidates: int) -> torch.Tensor:
    """(n, C) skill rows with the best ``pooled`` scores (n, S), C = ``candidates`` (at most S)."""
    return torch.topk(pooled, min(candidates, pooled.shape[1]), dim=1).indices


def two_stage_top_k(queries: PackedQueries, matrix: torch.Tensor, k: int, candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, scores) of the ``k`` best of each sentence's pooled top ``candidates`` skills, re-ranked by token attention.

    The candidate count is at least ``k``; ties rank the lower skill index first, as exhaustive ranking does.
    """
    idx_out, score_out = [], []
    for start in range(0, len(queries), RANK_CHUNK):
        block = queries[start : start + RANK_CHUNK]
        cand = pooled_candidates(pooled_scores(block, matrix), max(candidates, k))
        idx, scores = ordered_top_k(candidate_scores(block, matrix, cand), cand, k)
        idx_out.append(idx)
        score_out.append(scores)
    if not idx_out:
        return torch.empty((0, min(k, matrix.shape[0])), dtype=torch.int64), torch.empty((0, min(k, matrix.shape[0])), dtype=matrix.dtype)
    return torch.cat(idx_out), torch.cat(score_out)


def two_stage_scores(queries: PackedQueries, matrix: torch.Tensor, candidates: int) -> torch.Tensor:
    """(n, S) float32: candidates' token-attention scores, every other skill pooled minus :data:`NON_CANDIDATE_OFFSET`."""
    pooled = pooled_scores(queries, matrix)
    cand = pooled_candidates(pooled, candidates)
    return (pooled.float() - NON_CANDIDATE_OFFSET).scatter_(1, cand, candidate_scores(queries, matrix, cand).float())


def ordered_top_k(scores: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best (skill index, score) pairs per row of (n, m) ``scores`` for skills ``idx``; equal scores: lower index first."""
    idx, order = torch.sort(idx, dim=1)
    values, order = torch.sort(torch.gather(scores, 1, order), dim=1, descending=True, stable=True)
    return torch.gather(idx, 1, order)[:, :k], values[:, :k]


def top_k_chunked(queries: Queries, matrix: torch.Tensor, k: int, chunk: int = RANK_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, scores) of the ``k`` best-scoring rows of ``matrix`` per query, best first.

    Pooled queries (n, D) score ``queries @ matrix.T``; token queries score by
    token attention on every skill (:func:`~skilltrain.kernels.exhaustive_scores`,
    whose blocks are sized to the cache). Only ``chunk`` queries are scored at a
    time (bounding the chunk x skills score block), on the matrix's device and in
    its dtype. Ties rank the lower skill index first, as
    :func:`skilltrain.evaluation.metrics.top_k_indices` does, so the result
    does not depend on ``torch.topk``'s choice among equal scores.
    """
    queries = as_packed(queries)
    k = min(k, matrix.shape[0])
    probe = min(k + 1, matrix.shape[0])  # one more, to see a tie across the k-th place
    device = matrix.device
    idx_out = torch.empty((len(queries), k), dtype=torch.int64, device=device)
    score_out = torch.empty((len(queries), k), dtype=matrix.dtype, device=device)
    for start in range(0, len(queries), chunk):
        scores = score_block(queries[start : start + chunk], matrix).to(matrix.dtype)
        values, idx = torch.topk(scores, probe, dim=1)
        idx, values = ordered_top_k(values, idx, probe)
        if probe > k:
            for row in torch.nonzero(values[:, k - 1] == values[:, k]).flatten().tolist():  # rare: full stable sort
                full_values, full_idx = torch.sort(scores[row], descending=True, stable=True)
                values[row], idx[row] = full_values[:probe], full_idx[:probe]
        idx_out[start : start + chunk], score_out[start : start + chunk] = idx[:, :k], values[:, :k]
    return idx_out, score_out


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (given a name, it would append ``.npy`` to a temporary name)."""
    with open(path, "wb") as fh:
        np.save(fh, array)
