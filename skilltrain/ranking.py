"""Rank every ESCO skill for a batch of sentences: the one code path shared by
evaluation and extraction, so a benchmark score is exactly what users get.

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
from skilltrain.model import BiEncoder
from skilltrain.scoring import Queries, TokenQueries, rows_per_chunk, score_block

if TYPE_CHECKING:  # polars stays optional at run time for callers that pass an Arrow table (GPU benchmark hosts)
    import polars as pl
    import pyarrow as pa

log = logging.getLogger(__name__)

INDEX_DIR_NAME = "skill_index"
#: sentences scored per matmul: bounds the score block to RANK_CHUNK x n_skills (~57 MB fp32 for ESCO)
RANK_CHUNK = 1024


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

    def scores(self, queries: "np.ndarray | Queries") -> np.ndarray:
        """(n, n_skills) score of each sentence against every skill, under the queries' scoring.

        Pooled unit vectors (a numpy array or tensor): cosine similarity. :class:`TokenQueries`:
        token attention, computed in row blocks so the queries x tokens x skills
        intermediate stays bounded (:data:`~skilltrain.scoring.TOKEN_SCORE_BUDGET`).
        """
        if not isinstance(queries, TokenQueries):
            return np.asarray(queries, dtype=np.float32) @ self.embeddings.T
        matrix = torch.from_numpy(self.embeddings)
        step = rows_per_chunk(queries, matrix.shape[0], RANK_CHUNK)
        out = np.empty((len(queries), matrix.shape[0]), dtype=np.float32)
        for start in range(0, len(queries), step):
            out[start : start + step] = score_block(queries[start : start + step], matrix).float().numpy()
        return out

    def top_k(self, queries: "np.ndarray | Queries", k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) of the k best skills per sentence, best first."""
        queries = torch.from_numpy(queries) if isinstance(queries, np.ndarray) else queries
        idx, scores = top_k_chunked(queries, torch.from_numpy(self.embeddings), k)
        return idx.numpy(), scores.numpy()


def top_k_chunked(queries: Queries, matrix: torch.Tensor, k: int, chunk: int = RANK_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, scores) of the ``k`` best-scoring rows of ``matrix`` per query, best first.

    Pooled queries (n, D) score ``queries @ matrix.T``; :class:`TokenQueries`
    score by token attention. Only a block of ``chunk`` queries (for tokens:
    as many as keep the queries x tokens x skills intermediate under
    :data:`~skilltrain.scoring.TOKEN_SCORE_BUDGET`) is scored at a time, in the
    inputs' dtype and on their device. Ties rank the lower skill index first, as
    :func:`skilltrain.evaluation.metrics.top_k_indices` does, so the result
    does not depend on ``torch.topk``'s choice among equal scores.
    """
    k = min(k, matrix.shape[0])
    probe = min(k + 1, matrix.shape[0])  # one more, to see a tie across the k-th place
    device = queries.tokens.device if isinstance(queries, TokenQueries) else queries.device
    chunk = min(chunk, rows_per_chunk(queries, matrix.shape[0], chunk))
    idx_out = torch.empty((len(queries), k), dtype=torch.int64, device=device)
    score_out = torch.empty((len(queries), k), dtype=matrix.dtype, device=device)
    for start in range(0, len(queries), chunk):
        scores = score_block(queries[start : start + chunk], matrix).to(matrix.dtype)
        values, idx = torch.topk(scores, probe, dim=1)
        idx, order = torch.sort(idx, dim=1)  # then a stable sort by score: equal scores keep index order
        values = torch.gather(values, 1, order)
        values, order = torch.sort(values, dim=1, descending=True, stable=True)
        idx = torch.gather(idx, 1, order)
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
