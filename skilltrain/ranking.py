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
from typing import Sequence

import numpy as np
import polars as pl

from skilltrain.evaluation.metrics import top_k_indices
from skilltrain.model import BiEncoder

log = logging.getLogger(__name__)

INDEX_DIR_NAME = "skill_index"


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


@dataclass
class SkillIndex:
    """Unit-norm skill embeddings aligned with ``skills`` rows."""

    skills: pl.DataFrame
    embeddings: np.ndarray

    @classmethod
    def build(
        cls,
        encoder: BiEncoder,
        skills: pl.DataFrame,
        cache_dir: str | Path | None = None,
        cache_key: str = "",
        batch_size: int = 256,
        progress: bool = False,
    ) -> "SkillIndex":
        labels = skills["label"].to_list()
        key = hashlib.sha256(f"{cache_key}:{texts_fingerprint(labels)}:{encoder.max_seq_length}".encode()).hexdigest()[:20]
        cached = Path(cache_dir) / INDEX_DIR_NAME / f"{key}.npy" if cache_dir is not None else None
        if cached is not None and cached.exists():
            emb = np.load(cached)
            if emb.shape == (len(labels), encoder.dim):
                return cls(skills, emb)
        emb = encoder.encode(labels, batch_size=batch_size, progress=progress, desc="encoding skills")
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, emb)
                os.replace(tmp, cached)
                (cached.parent / f"{key}.json").write_text(json.dumps({"cache_key": cache_key, "n_skills": len(labels)}))
            except OSError as exc:  # a read-only model dir (site-packages) only loses the cache
                log.debug("skill index not cached in %s: %s", cached.parent, exc)
        return cls(skills, emb)

    def scores(self, sentence_embeddings: np.ndarray) -> np.ndarray:
        """Cosine similarity of each sentence to every skill (embeddings are unit norm)."""
        return sentence_embeddings @ self.embeddings.T

    def top_k(self, sentence_embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) of the k best skills per sentence, best first."""
        scores = self.scores(sentence_embeddings)
        idx = top_k_indices(scores, k)
        return idx, np.take_along_axis(scores, idx, axis=-1)
