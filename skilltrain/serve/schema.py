"""The HTTP API's request and response bodies (pydantic), which FastAPI publishes as the OpenAPI schema.

Responses mirror :meth:`SkillExtractor.extract`: one :class:`TextResult` per input text, each with its
sentences and their ranked skills, built from ``dataclasses.asdict`` of the extractor's own result. A
field the extractor adds to :class:`~skilltrain.extraction.extractor.SkillMatch` (such as ``evidence``)
therefore reaches the caller as soon as this schema names it, with no change to the serving code.

Limits (texts per request, characters per text, the top_k range) are the server's settings, so they are
checked by :mod:`skilltrain.serve.api` and written into the published schema there, not fixed here.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


class ExtractRequest(BaseModel):
    """``POST /v1/extract``: job-ad texts and how to rank them."""

    model_config = ConfigDict(strict=True, extra="forbid")

    texts: list[str] = Field(description="job-ad texts; each is split into sentences unless split is false")
    top_k: int = Field(5, description="skills per sentence, best first")
    min_score: Optional[float] = Field(None, description="drop skills scoring below this (cosine, in [-1, 1])")
    split: bool = Field(True, description="false: each text is one sentence (the benchmark protocol)")
    exhaustive: Optional[bool] = Field(None, description="token-attention models: score every skill, not the saved C "
                                       "candidates (null: the model's default, two-stage)")
    diverse: Optional[bool] = Field(None, description="token-attention models: coverage-aware top-k, preferring skills "
                                    "found in other words (null: the model's saved default)")
    diversity: Optional[float] = Field(None, ge=0, description="token-attention models: the coverage-aware top-k at this "
                                       "strength (implies diverse; null: the strength the model saved)")


class Evidence(BaseModel):
    """A span of the sentence the skill attended to (token-attention models)."""

    start: int
    end: int
    text: str
    weight: float


class SkillResult(BaseModel):
    skill_id: str = Field(description="ESCO concept URI")
    label: str
    score: float
    evidence: Optional[list[Evidence]] = Field(None, description="the words the skill attended to, when the model reports them")


class SentenceResult(BaseModel):
    sentence: str
    skills: list[SkillResult]


class TextResult(BaseModel):
    text: str
    sentences: list[SentenceResult]


class ExtractResponse(BaseModel):
    results: list[TextResult] = Field(description="one per input text, in order")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx this service sends itself: one line naming the field and the limit."""

    detail: str = Field(description="one line: the field (or 'body', 'authorization') and what is wrong with it")


class ModelInfo(BaseModel):
    """``GET /v1/model``: what is being served, read from the model directory."""

    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(description="the model dir, path or URI, as configured")
    base_encoder: Optional[str] = Field(None, description="the encoder training started from (None: not trained by skilltrain)")
    trained: bool
    scoring: dict[str, Any] = Field(description="skilltrain_scoring.json: pooled or token_attention, temperature")
    taxonomy: dict[str, Any] = Field(description="taxonomy file, its sha256, skill count, ESCO version when bundled")
    version: Optional[str] = Field(None, description="esco-skillgen package version")
    backend: str
    device: str
    max_seq_length: int
    best_step: Optional[int] = None
    validation: Optional[dict[str, Any]] = Field(None, description="eval_results.json: validation scores of the saved step")
    test: Optional[dict[str, Any]] = Field(None, description="eval_results.json: test scores (RP@K, MRR per benchmark set)")


class Health(BaseModel):
    status: str = "ok"
