"""What the ingress and the model replicas send each other (through Ray, pickled): plain frozen dataclasses.

Kept free of torch, Ray and FastAPI, so the ingress replica (which parses HTTP and never touches the
encoder) stays a small process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class ExtractOptions:
    """Keyword arguments of :meth:`SkillExtractor.extract` a request chose; texts with equal options share a model call."""

    top_k: int = 5
    min_score: Optional[float] = None
    split: bool = True
    exhaustive: Optional[bool] = None
    diverse: Optional[bool] = None
    #: a strength for the coverage-aware top-k (None: the model's). A field of its own, not a number in
    #: ``diverse``: ``True == 1.0`` and ``False == 0.0``, so equal-looking options would share a model call.
    diversity: Optional[float] = None

    def extract_kwargs(self) -> dict[str, Any]:
        """The :meth:`SkillExtractor.extract` keywords (its ``diverse`` takes a strength as well as True/False)."""
        kwargs = asdict(self)
        strength = kwargs.pop("diversity")
        if strength is not None:
            kwargs["diverse"] = strength
        return kwargs


@dataclass(frozen=True)
class ExtractJob:
    """One validated ``POST /v1/extract``: its texts and options."""

    texts: tuple[str, ...]
    options: ExtractOptions


@dataclass(frozen=True)
class Timing:
    """Where a request's time went inside the model replica (seconds; the longest of its texts)."""

    queue_s: float  # waiting in the batch queue: for the batch to fill, or for the batch before it
    model_s: float  # the model call (split, encode, rank) of the batch it rode in
    replica_s: float  # everything in the replica, from arrival to answer


@dataclass(frozen=True)
class ExtractAnswer:
    """One ``dataclasses.asdict(TextSkills)`` per text, in request order, and the replica's timing."""

    results: list[dict[str, Any]]
    timing: Timing
