"""How a sentence is scored against a skill: one pooled vector, or token-level attention.

Two scorings share one encoder and one skill side (a mean-pooled, unit-norm
label embedding ``s``); only the sentence side differs:

* ``pooled``: the sentence is one mean-pooled unit vector ``q``; score = ``q . s``
  (cosine). The paper's bi-encoder (Decorte et al. 2023).
* ``token_attention``: the sentence keeps its token embeddings ``x_1..x_L``;
  each skill attends to the tokens that talk about it:

      score(x, s) = sum_t softmax_t(x_t . s / T) * cos(x_t, s)

  over the sentence's non-padding tokens (ConTeXT-match: Decorte, van Hautte,
  Develder, Demeester, "Efficient Text Encoders for Labor Market Analysis",
  IEEE Access 13, 2025). A job-ad sentence often names two or three skills;
  a pooled vector has to average them, attention does not. The score is a
  convex combination of cosines, so it lives in [-1, 1] like the pooled one
  and the same InfoNCE scale applies.

Token embeddings are kept raw (not normalised): the attention logits are raw
dot products with the unit skill vector, and ``cos`` divides by the token norm.
Padding positions are zero vectors with a False mask (:class:`TokenQueries`, the
training loss's layout and the reference; ranking packs the attended tokens
without padding, :mod:`skilltrain.packed`, :mod:`skilltrain.kernels`). The model directory
says which scoring it uses (``skilltrain_scoring.json``); a directory without
that file is a pooled model, so every sentence-transformers model keeps working.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Union

import torch

SCORING_FILE = "skilltrain_scoring.json"
SCORINGS = ("pooled", "token_attention")
Scoring = Literal["pooled", "token_attention"]
DEFAULT_ATTENTION_TEMPERATURE = 3.0
#: strength of the coverage-aware top-k when a model does not carry one (see :mod:`skilltrain.coverage`)
DEFAULT_DIVERSITY = 0.1


@dataclass(frozen=True)
class ScoringConfig:
    """Which scoring a model uses, saved next to its weights."""

    scoring: Scoring = "pooled"
    attention_temperature: float = DEFAULT_ATTENTION_TEMPERATURE
    #: leave [CLS]/[SEP] (any special token) out of the attended tokens
    exclude_special_tokens: bool = True
    #: token attention, two-stage: re-rank the top ``candidates`` skills of the pooled vector from the same
    #: forward pass (chosen on validation, :mod:`skilltrain.evaluation.candidates`); None (or 0) = score every skill
    candidates: int | None = None
    #: extraction's default top-k: coverage-aware (skills attending to different words) or plain
    diverse: bool = False
    #: how strongly the coverage-aware top-k penalises a skill's similarity to those already chosen
    diversity: float = DEFAULT_DIVERSITY

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {self.scoring!r}; choose from {', '.join(SCORINGS)}")
        if not self.attention_temperature > 0:
            raise ValueError(f"attention_temperature must be > 0, got {self.attention_temperature}")
        if self.candidates is not None and (isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or self.candidates < 0):
            raise ValueError(f"candidates must be a whole number >= 0 or null, got {self.candidates!r}")
        if self.candidates == 0:
            object.__setattr__(self, "candidates", None)
        if not self.diversity >= 0:
            raise ValueError(f"diversity must be >= 0, got {self.diversity}")

    @property
    def token_level(self) -> bool:
        return self.scoring == "token_attention"

    def ranking_candidates(self, exhaustive: bool | None = None) -> int | None:
        """Candidates per sentence to re-rank, or None to score every skill: the saved C unless ``exhaustive``.

        Pooled models score every skill with one matmul anyway, so they are always "exhaustive".
        """
        return None if exhaustive or not self.token_level else self.candidates

    def diversity_strength(self, diverse: "bool | float | None" = None) -> float | None:
        """The coverage-aware top-k's strength to rank with, or None for plain top-k.

        ``diverse``: None = the saved default, True = on at the saved strength, False = off, a number = on at that
        strength (a caller who wants broader coverage than validation chose, at its measured cost in RP@5).
        """
        if wants_diverse(diverse) and diverse is not True:  # a number: on, at that strength
            strength = float(diverse)
            if not strength >= 0:
                raise ValueError(f"a diversity strength must be >= 0, got {diverse}")
            return strength if self.token_level else None
        on = self.diverse if diverse is None else diverse
        return self.diversity if on and self.token_level else None

    def save(self, model_dir: str | Path) -> None:
        (Path(model_dir) / SCORING_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, model_dir: str | Path) -> "ScoringConfig":
        """The model's scoring; pooled when the directory does not say (any sentence-transformers model)."""
        path = Path(model_dir) / SCORING_FILE
        if not path.exists():
            return cls()
        from skillgen.common import UserError

        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path}: invalid scoring config ({exc})") from None


@dataclass
class TokenQueries:
    """Sentences as token embeddings, ready to score against skills.

    ``tokens`` (n, L, D) raw, zero where not attended; ``mask`` (n, L) bool, the tokens
    a skill may attend to; ``temperature`` the attention's (the model's, carried along
    so every ranking path scores exactly as the model says).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    temperature: float = DEFAULT_ATTENTION_TEMPERATURE

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, rows) -> "TokenQueries":
        return TokenQueries(self.tokens[rows], self.mask[rows], self.temperature)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "TokenQueries":
        """On ``device``, token embeddings in ``dtype`` (the mask stays bool)."""
        tokens = self.tokens.to(device=device, dtype=dtype)
        return TokenQueries(tokens, self.mask.to(tokens.device), self.temperature)

    def with_temperature(self, temperature: float) -> "TokenQueries":
        return TokenQueries(self.tokens, self.mask, temperature)

    @classmethod
    def concat(cls, parts: list["TokenQueries"]) -> "TokenQueries":
        """Rows of all parts, padded to the longest part's length."""
        length = max(p.tokens.shape[1] for p in parts)
        return cls(
            torch.cat([torch.nn.functional.pad(p.tokens, (0, 0, 0, length - p.tokens.shape[1])) for p in parts]),
            torch.cat([torch.nn.functional.pad(p.mask, (0, length - p.mask.shape[1])) for p in parts]),
            parts[0].temperature,
        )


Queries = Union[torch.Tensor, TokenQueries]


def wants_diverse(diverse: "bool | float | None") -> bool:
    """Whether a caller's ``diverse`` asks for the coverage-aware top-k: True, or a strength (0 included)."""
    return diverse is True or (isinstance(diverse, (int, float)) and not isinstance(diverse, bool))


def mean_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token embeddings under ``attention_mask``: the pooled sentence vector (before normalising)."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    return (token_embeddings * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def attended_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: "list[int] | None") -> torch.Tensor:
    """(n, L) bool: the tokens a skill attends to; ``special_ids`` ([CLS], [SEP], ...) left out when given.

    A text with no other token (an empty string) keeps its special tokens, so no row is empty.
    """
    mask = attention_mask.bool()
    if not special_ids:
        return mask
    content = mask & ~torch.isin(input_ids, torch.as_tensor(sorted(special_ids), device=input_ids.device))
    return torch.where(content.any(dim=1, keepdim=True), content, mask)


def token_attention_scores(tokens: torch.Tensor, mask: torch.Tensor, skills: torch.Tensor, temperature: float) -> torch.Tensor:
    """(n, S) scores of n sentences' tokens (n, L, D) against S unit skill vectors (S, D).

    Differentiable (the training loss calls it). The intermediate is n x L x S:
    callers bound n (ranking chunks, a worker's local batch).
    """
    dots = tokens @ skills.T.to(tokens.dtype)  # (n, L, S): x_t . s
    norms = tokens.norm(dim=-1, keepdim=True).clamp(min=1e-6)  # (n, L, 1)
    keep = mask.unsqueeze(-1)
    weights = torch.softmax((dots / temperature).masked_fill(~keep, float("-inf")), dim=1)
    return (weights * (dots / norms)).masked_fill(~keep, 0.0).sum(dim=1)
