"""The generation prompt: one ESCO skill in, N job-ad sentences out as JSON.

The prompt is versioned (:data:`PROMPT_VERSION`, stored in every generated
row and part of the idempotency key) because changing its wording changes the
data distribution: rows from two versions must never be mistaken for one run.

Its field lines (``Skill:``, ``Description:``, ``Alternative labels:``) and
the ``Write N`` count are a stable, documented layout so that any LLM (and the
bundled simulator, which reads only the prompt text, as a real LLM would) can
ground its sentences in the skill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from skillgen.common.taxonomy import Skill

__all__ = ["AVOID_TEMPLATE", "PROMPT_VERSION", "PromptSpec", "RESPONSE_SCHEMA", "SYSTEM_PROMPT", "USER_TEMPLATE",
           "build_messages", "response_format"]

PROMPT_VERSION = "v1"

SYSTEM_PROMPT = (
    "You write realistic sentences from job advertisements. Each sentence must show that the job "
    "requires the given skill, in the voice of a recruiter or hiring manager. Answer with JSON only."
)

USER_TEMPLATE = """Write {n} distinct sentences as they would appear in job ads for roles that require the ESCO skill below.
Skill: {label}
Description: {description}
Alternative labels: {alt_labels}

Vary the sentences:
- explicit requirements ("You have ...", "Experience with ... is required"),
- responsibilities ("You will ..."),
- implicit mentions that describe the skill in action without using its label literally,
- different seniority levels (junior to lead) and different sectors or company types.
Each sentence is one line of at most 40 words, with no numbering and no quotes.{avoid}
Return a JSON object of the form {{"sentences": ["...", "..."]}} with exactly {n} strings."""

AVOID_TEMPLATE = "\nDo not repeat or paraphrase closely any of these sentences, which we already have:\n{lines}"

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sentences": {"type": "array", "items": {"type": "string"}}},
    "required": ["sentences"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class PromptSpec:
    """What shapes the prompt text; part of the run config and of the request key."""

    n_sentences: int = 10
    include_alt_labels: bool = True
    max_alt_labels: int = 6
    version: str = PROMPT_VERSION


def build_messages(skill: Skill, n: int, spec: PromptSpec = PromptSpec(), avoid: Sequence[str] = ()) -> list[dict[str, str]]:
    """Chat messages asking for ``n`` sentences about ``skill``; ``avoid`` lists sentences already kept."""
    alts = list(skill.alt_labels[: spec.max_alt_labels]) if spec.include_alt_labels else []
    avoid_text = AVOID_TEMPLATE.format(lines="\n".join(f"- {s}" for s in avoid)) if avoid else ""
    user = USER_TEMPLATE.format(
        n=n,
        label=skill.label,
        description=skill.description.strip() or "(none given)",
        alt_labels="; ".join(alts) if alts else "(none)",
        avoid=avoid_text,
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def response_format(json_schema: bool = True, schema_in_json_object: bool = False) -> dict[str, Any]:
    """``response_format`` for the request: strict JSON schema where supported, else JSON mode.

    ``schema_in_json_object``: the schema as the ``schema`` field of a ``json_object`` format, the form
    llama-cpp-python's server (and Anyscale) take; they reject OpenAI's ``json_schema`` type.
    """
    if not json_schema:
        return {"type": "json_object"}
    if schema_in_json_object:
        return {"type": "json_object", "schema": RESPONSE_SCHEMA}
    return {"type": "json_schema", "json_schema": {"name": "job_ad_sentences", "strict": True, "schema": RESPONSE_SCHEMA}}
