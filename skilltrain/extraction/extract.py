"""Skill extraction for users: job-ad text in, ranked ESCO skills out.

:class:`SkillExtractor` is the one object behind the Python API, the
``skilltrain extract`` command and the Ray Data batch actors. It ranks with
:class:`~skilltrain.ranking.SkillIndex`, the code path ``skilltrain eval``
scores, so a benchmark number is what a user gets (``split=False`` reproduces
the benchmark protocol exactly: one input text = one sentence).

The skill embeddings (13,896 labels, ~15 s of CPU) are computed once per
(model weights, taxonomy file content) and cached next to the model, or under
``~/.cache/skillgen/index/<model fingerprint>`` when the model directory is not
writable (e.g. the bundled MiniLM inside site-packages).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import polars as pl
import torch

from skillgen.common.errors import UserError
from skillgen.common.taxonomy import file_sha256, load_skills, resolve_esco_path
from skilltrain.model import BiEncoder, check_encoder_dir, default_model_dir
from skilltrain.ranking import INDEX_DIR_NAME, SkillIndex, model_fingerprint, texts_fingerprint
from skilltrain.extraction.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, split_sentences

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "SKILLGEN_CACHE_DIR"
#: sentences ranked per score matrix; bounds memory to RANK_CHUNK x n_skills float32 (~110 MB for ESCO)
RANK_CHUNK = 2048


@dataclass(frozen=True)
class SkillMatch:
    """One ranked ESCO skill for a sentence; ``score`` is the cosine similarity."""

    skill_id: str
    label: str
    score: float


@dataclass(frozen=True)
class SentenceSkills:
    """A sentence of the input and its skills, best first (at most ``top_k``, all >= ``min_score``)."""

    sentence: str
    skills: tuple[SkillMatch, ...]


@dataclass(frozen=True)
class TextSkills:
    """The result for one input text: its sentences in order, each with its skills."""

    text: str
    sentences: tuple[SentenceSkills, ...]

    def top_skills(self, k: int | None = None) -> list[SkillMatch]:
        """Skills of the whole text, each once with its best sentence score, best first."""
        best: dict[str, SkillMatch] = {}
        for sentence in self.sentences:
            for match in sentence.skills:
                if match.skill_id not in best or match.score > best[match.skill_id].score:
                    best[match.skill_id] = match
        ranked = sorted(best.values(), key=lambda m: -m.score)
        return ranked if k is None else ranked[:k]


def user_cache_dir() -> Path:
    """``$SKILLGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/skillgen``, else ``~/.cache/skillgen``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "skillgen"


def _writable(directory: Path) -> bool:
    try:
        (directory / INDEX_DIR_NAME).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory / INDEX_DIR_NAME, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def index_cache_dir(model_dir: str | Path) -> Path:
    """Where the skill index of ``model_dir`` is cached: the model dir itself when writable."""
    model_dir = Path(model_dir)
    if _writable(model_dir):
        return model_dir
    return user_cache_dir() / "index" / model_fingerprint(model_dir)


def taxonomy_cache_key(model_dir: Path, taxonomy_path: Path | None, skills: pl.DataFrame) -> str:
    """Model weights + taxonomy file content (+ skill ids, when the skills came as a frame)."""
    content = file_sha256(taxonomy_path)[:16] if taxonomy_path is not None else "frame-" + texts_fingerprint(skills["skill_id"].to_list())
    return f"{model_fingerprint(model_dir)}:{content}"


class SkillExtractor:
    """Split texts into sentences and rank every ESCO skill for each sentence.

    >>> extractor = SkillExtractor.from_pretrained("models/run1", taxonomy="skills_en.csv")
    >>> [result] = extractor.extract(["- 3+ years of Python\\n- Fluent in German"], top_k=3)
    >>> result.sentences[0].skills[0].label
    'Python'
    """

    def __init__(
        self,
        encoder: BiEncoder,
        index: SkillIndex,
        *,
        batch_size: int = 128,
        max_words: int = DEFAULT_MAX_WORDS,
        overlap: int = DEFAULT_OVERLAP,
        bf16: bool = False,
    ):
        self.encoder = encoder
        self.index = index
        self.batch_size = batch_size
        self.max_words = max_words
        self.overlap = overlap
        self.bf16 = bf16
        self._skill_ids = index.skills["skill_id"].to_list()
        self._labels = index.skills["label"].to_list()

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path | None = None,
        taxonomy: str | Path | pl.DataFrame | None = None,
        *,
        max_seq_length: int | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 128,
        max_words: int = DEFAULT_MAX_WORDS,
        overlap: int = DEFAULT_OVERLAP,
        bf16: bool = False,
        progress: bool = False,
    ) -> "SkillExtractor":
        """Load the encoder and the (cached) skill index.

        ``model_dir``: encoder directory (default: bundled all-MiniLM-L6-v2).
        ``taxonomy``: ESCO skills CSV path, an already loaded skills frame, or
        None for the default CSV (``$ESCO_SKILLS_CSV`` / shared data dir).
        ``cache_dir``: where to cache the index (default: :func:`index_cache_dir`).
        ``bf16``: encode sentences under bfloat16 autocast; ~1.7x faster on
        CPUs with AMX/AVX512-BF16, scores move by ~1e-3 (off by default so
        results equal ``skilltrain eval``).
        """
        model_dir = check_encoder_dir(model_dir if model_dir is not None else default_model_dir())
        if isinstance(taxonomy, pl.DataFrame):
            skills, taxonomy_path = taxonomy, None
        else:
            taxonomy_path = resolve_esco_path(taxonomy)
            skills = load_skills(taxonomy_path)
        encoder = BiEncoder.from_pretrained(model_dir, max_seq_length)
        cache = Path(cache_dir) if cache_dir is not None else index_cache_dir(model_dir)
        index = SkillIndex.build(
            encoder, skills, cache_dir=cache, cache_key=taxonomy_cache_key(model_dir, taxonomy_path, skills), progress=progress
        )
        return cls(encoder, index, batch_size=batch_size, max_words=max_words, overlap=overlap, bf16=bf16)

    @property
    def n_skills(self) -> int:
        return len(self._labels)

    def split(self, text: str) -> list[str]:
        return split_sentences(text, self.max_words, self.overlap)

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx:
            return self.encoder.encode(sentences, batch_size=self.batch_size)

    def rank(self, sentences: Sequence[str], top_k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(skill row indices, scores), each ``len(sentences) x top_k``, best first.

        Identical sentences are encoded once (job-ad corpora repeat a lot);
        ranking goes through :meth:`SkillIndex.top_k` in chunks of
        :data:`RANK_CHUNK` so memory stays flat for any input size.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 (got {top_k})")
        k = min(top_k, self.n_skills)
        if not sentences:
            return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
        unique = list(dict.fromkeys(sentences))
        embeddings = self.encode(unique)
        idx = np.empty((len(unique), k), dtype=np.int64)
        scores = np.empty((len(unique), k), dtype=np.float32)
        for start in range(0, len(unique), RANK_CHUNK):
            i, s = self.index.top_k(embeddings[start : start + RANK_CHUNK], k)
            idx[start : start + RANK_CHUNK], scores[start : start + RANK_CHUNK] = i, s
        if len(unique) != len(sentences):
            row = {s: n for n, s in enumerate(unique)}
            take = np.fromiter((row[s] for s in sentences), dtype=np.int64, count=len(sentences))
            idx, scores = idx[take], scores[take]
        return idx, scores

    def _matches(self, idx: np.ndarray, scores: np.ndarray, min_score: float | None) -> tuple[SkillMatch, ...]:
        return tuple(
            SkillMatch(self._skill_ids[i], self._labels[i], float(s))
            for i, s in zip(idx.tolist(), scores.tolist())
            if min_score is None or s >= min_score
        )

    def extract_sentences(self, sentences: Sequence[str], top_k: int = 5, min_score: float | None = None) -> list[SentenceSkills]:
        """Rank skills for sentences as given (no splitting): the benchmark protocol."""
        idx, scores = self.rank(sentences, top_k)
        return [SentenceSkills(s, self._matches(idx[n], scores[n], min_score)) for n, s in enumerate(sentences)]

    def extract(
        self,
        texts: str | Iterable[str],
        top_k: int = 5,
        min_score: float | None = None,
        split: bool = True,
    ) -> list[TextSkills]:
        """One :class:`TextSkills` per input text (a single ``str`` counts as one text).

        ``split=False`` treats each text as one sentence (benchmark sentences,
        pre-split corpora); texts that are empty or only whitespace then give
        no sentence, as they do with splitting; other texts are encoded unchanged.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        per_text = [self.split(t) if split else ([t] if t.strip() else []) for t in texts]
        flat = [s for sentences in per_text for s in sentences]
        ranked = iter(self.extract_sentences(flat, top_k, min_score))
        return [TextSkills(t, tuple(next(ranked) for _ in sentences)) for t, sentences in zip(texts, per_text)]
