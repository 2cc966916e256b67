"""Skill extraction for users: job-ad text in, ranked ESCO skills out.

:class:`SkillExtractor` is the one object behind the Python API, the
``skilltrain extract`` command and the Ray Data batch actors. It ranks with
:class:`~skilltrain.ranking.SkillIndex`, the code path ``skilltrain eval``
scores, so a benchmark number is what a user gets (``split=False`` reproduces
the benchmark protocol exactly: one input text = one sentence). A token-attention
model ranks two-stage with the candidate count C saved with it (``exhaustive=True``
scores every skill), optionally coverage-aware (``diverse``), and each extracted
skill carries its evidence: the spans of the sentence it was found in.

The skill embeddings (13,896 labels, ~15 s of CPU) are computed once per
(model weights, taxonomy file content) with the fp32 reference encoder and
cached next to the model, or under ``~/.cache/skillgen/index/<model
fingerprint>`` when the model directory is not writable (e.g. the bundled
MiniLM inside site-packages). The label side is paid once, so it gets full
precision; only the sentence side runs on the fast ``backend`` (see
:mod:`skilltrain.extraction.backends`), which is why one cached index serves
every backend. ``backend="torch-fp32"`` reproduces ``skilltrain eval``
exactly; the default backend stays within 0.3 RP@5 of it (guarded by tests).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch

from skillgen.common import UserError
from skilltrain.cache import user_cache_dir
from skilltrain.extraction.backends import (
    SentenceEncoder, check_backend, default_backend, default_batch_size, load_sentence_encoder, resolve_device,
)
from skilltrain.extraction.evidence import Evidence, evidence_spans
from skilltrain.extraction.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP, split_sentences
from skilltrain.model import BiEncoder, check_encoder_dir, default_model_dir
from skilltrain.packed import PackedQueries, Queries
from skilltrain.ranking import INDEX_DIR_NAME, SkillIndex, column_values, model_fingerprint, rank_tokens, texts_fingerprint, top_k
from skilltrain.scoring import wants_diverse

if TYPE_CHECKING:  # polars is imported where a taxonomy is loaded, so extraction runs without it given an index
    import polars as pl

log = logging.getLogger(__name__)

#: unique sentences encoded and ranked per block by a token-attention model (bounds its n x L x D queries)
TOKEN_QUERY_BLOCK = 1024


@dataclass(frozen=True)
class SkillMatch:
    """One ranked ESCO skill for a sentence; ``score`` is the cosine similarity (token attention: the attention-weighted
    cosine of the sentence's tokens with the skill, also in [-1, 1]); ``evidence`` (token attention): the sentence's
    words the skill attended to most, as character spans of the sentence, heaviest first."""

    skill_id: str
    label: str
    score: float
    evidence: tuple[Evidence, ...] = ()


@dataclass
class Ranked:
    """Per sentence: skill rows and scores (n, k), best first, and each skill's evidence (token attention only)."""

    idx: np.ndarray
    scores: np.ndarray
    evidence: list[list[tuple[Evidence, ...]]] | None = None

    def take(self, rows: np.ndarray) -> "Ranked":
        evidence = None if self.evidence is None else [self.evidence[r] for r in rows.tolist()]
        return Ranked(self.idx[rows], self.scores[rows], evidence)

    @classmethod
    def concat(cls, parts: list["Ranked"]) -> "Ranked":
        evidence = None if any(p.evidence is None for p in parts) else [e for p in parts for e in p.evidence]
        return cls(np.concatenate([p.idx for p in parts]), np.concatenate([p.scores for p in parts]), evidence)


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


def _evidence(sentences: list[str], queries: PackedQueries, weights: np.ndarray) -> list[list[tuple[Evidence, ...]]]:
    """Evidence spans per sentence and skill from each token's share of the chosen skills' scores, packed (T, k)."""
    return evidence_spans(sentences, queries.spans.cpu().numpy(), queries.words.cpu().numpy(), queries.lengths.cpu().numpy(), weights)


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


def taxonomy_cache_key(model_dir: Path, taxonomy_path: Path | None, skills: "pl.DataFrame") -> str:
    """Model weights + taxonomy file content (+ skill ids, when the skills came as a frame)."""
    if taxonomy_path is None:
        return f"{model_fingerprint(model_dir)}:frame-{texts_fingerprint(column_values(skills, 'skill_id'))}"
    from skillgen.common import file_sha256

    content = file_sha256(taxonomy_path)[:16]
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
        encoder: SentenceEncoder,
        index: SkillIndex,
        *,
        max_words: int = DEFAULT_MAX_WORDS,
        overlap: int = DEFAULT_OVERLAP,
    ):
        self.encoder = encoder
        self.index = index
        self.max_words = max_words
        self.overlap = overlap
        self._skill_ids = column_values(index.skills, "skill_id")
        self._labels = column_values(index.skills, "label")
        # Scores in float32 on CPU: bf16 keeps 8 mantissa bits, which would tie skills 0.004 apart in
        # the top 5; the fp32 top-k took 2-3% of the default path's time (BENCHMARKS.md "Extraction").
        # On a GPU fp16 (10 bits) halves the memory traffic the top-k is bound by.
        device = encoder.device
        self.rank_dtype = torch.float16 if device.type == "cuda" else torch.float32
        self._matrix = torch.from_numpy(np.ascontiguousarray(index.embeddings)).to(device=device, dtype=self.rank_dtype)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path | None = None,
        taxonomy: "str | Path | pl.DataFrame | None" = None,
        *,
        max_seq_length: int | None = None,
        cache_dir: str | Path | None = None,
        backend: str | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        max_words: int = DEFAULT_MAX_WORDS,
        overlap: int = DEFAULT_OVERLAP,
        bf16: bool = False,
        progress: bool = False,
    ) -> "SkillExtractor":
        """Load the encoder on ``backend`` and the (cached) skill index.

        ``model_dir``: encoder directory or a name, ``minilm`` or ``mpnet`` (default: bundled all-MiniLM-L6-v2).
        ``taxonomy``: ESCO skills CSV path, an already loaded skills frame, or
        None for the default CSV (``$ESCO_SKILLS_CSV`` / shared data dir).
        ``cache_dir``: where to cache the index and ONNX graphs (default: :func:`index_cache_dir`).
        ``backend``: one of :data:`~skilltrain.extraction.backends.BACKENDS`
        (default: the fastest within 0.3 RP@5 of fp32 for the device).
        ``device``: ``"cpu"``, ``"cuda"``, ... (default: cuda when available).
        ``batch_size``: sentences per forward pass (default: 32 on CPU, 512 on GPU).
        ``bf16``: shorthand for ``backend="torch-bf16"`` (kept for older callers).
        """
        model_dir = check_encoder_dir(model_dir if model_dir is not None else default_model_dir())
        import polars as pl

        from skillgen.common import load_skills, resolve_esco_path

        if isinstance(taxonomy, pl.DataFrame):
            skills, taxonomy_path = taxonomy, None
        else:
            taxonomy_path = resolve_esco_path(taxonomy)
            skills = load_skills(taxonomy_path)
        model = BiEncoder.from_pretrained(model_dir, max_seq_length)
        cache = Path(cache_dir) if cache_dir is not None else index_cache_dir(model_dir)
        index = SkillIndex.build(  # before the encoder is cast for its backend: labels in fp32
            model, skills, cache_dir=cache, cache_key=taxonomy_cache_key(model_dir, taxonomy_path, skills), progress=progress
        )
        return cls.with_index(model, model_dir, index, backend=backend or ("torch-bf16" if bf16 else None), device=device,
                              batch_size=batch_size, cache_dir=cache, max_words=max_words, overlap=overlap)

    @classmethod
    def with_index(
        cls,
        model: BiEncoder,
        model_dir: Path,
        index: SkillIndex,
        *,
        backend: str | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        cache_dir: Path | None = None,
        max_words: int = DEFAULT_MAX_WORDS,
        overlap: int = DEFAULT_OVERLAP,
    ) -> "SkillExtractor":
        """An extractor around an fp32 ``model`` loaded from ``model_dir`` and a built ``index`` (Ray actors)."""
        torch_device = resolve_device(device)
        backend = check_backend(backend or default_backend(torch_device), torch_device)
        cache = cache_dir if cache_dir is not None else index_cache_dir(model_dir)
        encoder = load_sentence_encoder(model, backend, torch_device, batch_size or default_batch_size(torch_device),
                                        cache, model_fingerprint(model_dir))
        return cls(encoder, index, max_words=max_words, overlap=overlap)

    @property
    def n_skills(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> list[str]:
        """Skill labels in index row order."""
        return self._labels

    @property
    def backend(self) -> str:
        return self.encoder.backend

    def split(self, text: str) -> list[str]:
        return split_sentences(text, self.max_words, self.overlap)

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 embeddings of ``sentences`` (on the extractor's backend)."""
        return self.encoder.encode(sentences).float().cpu().numpy()

    @property
    def scoring(self):
        """The model's :class:`~skilltrain.scoring.ScoringConfig` (scoring, temperature, candidates C, diverse default)."""
        return self.encoder.scoring

    def rank(self, sentences: Sequence[str], top_k: int = 5, *, exhaustive: bool | None = None,
             diverse: bool | float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(skill row indices, scores), each ``len(sentences) x top_k``, best first.

        Identical sentences are encoded once (job-ad corpora repeat a lot); memory stays flat for any
        input size. ``exhaustive`` / ``diverse``: see :meth:`extract`.
        """
        ranked = self._rank(sentences, top_k, exhaustive, diverse, evidence=False)
        return ranked.idx, ranked.scores

    def _rank(self, sentences: Sequence[str], top_k: int, exhaustive: bool | None, diverse: bool | float | None,
              evidence: bool = True) -> Ranked:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 (got {top_k})")
        k = min(top_k, self.n_skills)
        if wants_diverse(diverse) and not self.scoring.token_level:
            raise UserError("--diverse needs a token-attention model (its skills' attention says which words they cover); "
                            "this model ranks pooled")
        if not sentences:
            return Ranked(np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32), [])
        unique = list(dict.fromkeys(sentences))
        if self.scoring.token_level:  # token queries are n x L x D: encode and rank a block at a time
            ranked = Ranked.concat([self._rank_tokens(unique[i : i + TOKEN_QUERY_BLOCK], k, exhaustive, diverse, evidence)
                                    for i in range(0, len(unique), TOKEN_QUERY_BLOCK)])
        else:
            ranked = Ranked(*self.rank_embeddings(self.encoder.encode(unique), k))
        if len(unique) != len(sentences):
            row = {s: n for n, s in enumerate(unique)}
            ranked = ranked.take(np.fromiter((row[s] for s in sentences), dtype=np.int64, count=len(sentences)))
        return ranked

    def _rank_tokens(self, sentences: list[str], k: int, exhaustive: bool | None, diverse: bool | float | None, evidence: bool) -> Ranked:
        """One encoder pass, then two-stage (or exhaustive) token attention, coverage-aware when asked, with evidence."""
        queries = self.encoder.encode_queries(sentences).to(dtype=self.rank_dtype)
        ranking = rank_tokens(queries, self._matrix, k, self.scoring.ranking_candidates(exhaustive),
                              self.scoring.diversity_strength(diverse))
        ranked = Ranked(ranking.idx.cpu().numpy(), ranking.scores.float().cpu().numpy())
        if evidence and queries.spans is not None:
            ranked.evidence = _evidence(sentences, queries, ranking.shares.float().cpu().numpy())
        return ranked

    def rank_embeddings(self, embeddings: Queries, k: int, candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` skills for unit-norm sentence embeddings (or a token model's queries, two-stage given ``candidates``),
        in :attr:`rank_dtype` on the encoder's device."""
        idx, scores = top_k(embeddings.to(dtype=self.rank_dtype), self._matrix, k, candidates)
        return idx.cpu().numpy(), scores.float().cpu().numpy()

    def _matches(self, ranked: Ranked, row: int, min_score: float | None) -> tuple[SkillMatch, ...]:
        evidence = ranked.evidence[row] if ranked.evidence is not None else [()] * ranked.idx.shape[1]
        return tuple(
            SkillMatch(self._skill_ids[i], self._labels[i], float(s), e)
            for i, s, e in zip(ranked.idx[row].tolist(), ranked.scores[row].tolist(), evidence)
            if min_score is None or s >= min_score
        )

    def extract_sentences(self, sentences: Sequence[str], top_k: int = 5, min_score: float | None = None, *,
                          exhaustive: bool | None = None, diverse: bool | float | None = None) -> list[SentenceSkills]:
        """Rank skills for sentences as given (no splitting): the benchmark protocol."""
        ranked = self._rank(sentences, top_k, exhaustive, diverse)
        return [SentenceSkills(s, self._matches(ranked, n, min_score)) for n, s in enumerate(sentences)]

    def extract(
        self,
        texts: str | Iterable[str],
        top_k: int = 5,
        min_score: float | None = None,
        split: bool = True,
        *,
        exhaustive: bool | None = None,
        diverse: bool | float | None = None,
    ) -> list[TextSkills]:
        """One :class:`TextSkills` per input text (a single ``str`` counts as one text).

        ``split=False`` treats each text as one sentence (benchmark sentences,
        pre-split corpora); texts that are empty or only whitespace then give
        no sentence, as they do with splitting; other texts are encoded unchanged.

        Token-attention models: ``exhaustive=True`` scores every skill with token attention instead of
        re-ranking the model's C pooled candidates (two-stage, the default when the model carries C);
        ``diverse=True`` prefers skills found in different words of the sentence (coverage-aware top-k, at the
        strength chosen on validation), a number asks for it at that strength (0.3 trades ~5 validation RP@5
        for broader coverage), ``False`` is plain top-k; None = the model's saved default (its scoring config).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        per_text = [self.split(t) if split else ([t] if t.strip() else []) for t in texts]
        flat = [s for sentences in per_text for s in sentences]
        ranked = iter(self.extract_sentences(flat, top_k, min_score, exhaustive=exhaustive, diverse=diverse))
        return [TextSkills(t, tuple(next(ranked) for _ in sentences)) for t, sentences in zip(texts, per_text)]
