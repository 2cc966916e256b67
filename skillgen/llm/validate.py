"""Turn one LLM response into clean sentences, or say exactly why not.

Models return JSON objects, bare lists, fenced code blocks, numbered lines,
truncated JSON (``finish_reason == "length"``) and occasionally nonsense.
Everything is parsed leniently but cleaned strictly: numbering and quotes are
stripped, and empty, over-long and duplicate sentences (also duplicates of
sentences already kept for the skill), sentences that are only the skill's
label, fragments of fewer than :data:`MIN_WORDS` words, echoes of the prompt's field lines and
sentences with an unfilled ``[placeholder]`` are dropped. The caller compares the
count with what it asked for and re-requests the shortfall; nothing here ever
pads or accepts fewer sentences silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

__all__ = ["DROP_REASONS", "MAX_CHARS", "MIN_WORDS", "Validation", "clean_sentence", "extract_items",
           "normalise_key", "validate_response"]

_NUMBERING = re.compile(r"^\s*(?:\(?\d{1,3}[\.\):\]]|[-*\u2022\u2013\u2014]|#\d+)\s*")
_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb`"
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_WS = re.compile(r"\s+")
# An unfilled template slot ("You have experience with [industry_specific]"), as SmolLM2-135M wrote for the
# main job's skills (BENCHMARKS.md, issue 21): a sentence with a slot is a template, not a job ad, and the
# slot stands where the skill should be; job-ad text rarely has square brackets.
_PLACEHOLDER = re.compile(r"\[[^\[\]]{1,60}\]")
# The prompt's own field lines copied back ("Skill: Electrooptic Devices, Systems and Components", SmolLM2 again):
# an echo of the request, not a sentence from a job ad.
_PROMPT_ECHO = re.compile(r"^\W{0,3}(?:skill|description|alternative labels)\W{0,3}:", re.I)
# Fewer words than this is a fragment ("1", "Bella", a timestamp and a name), not a sentence: a job-ad line that
# shows a skill has at least a verb and its object ("You know Python").
MIN_WORDS = 3
MAX_CHARS = 600
# every reason a sentence is dropped for, as :meth:`Validation.describe` names it ("<n> <reason>")
DROP_REASONS = ("non-string", "empty", "over-long", "label-only", "prompt-echo", "too-short", "placeholder", "duplicate",
                "extra")


@dataclass
class Validation:
    """Outcome of one response: kept sentences plus counts of what was dropped and why."""

    sentences: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    parse_error: str | None = None

    def describe(self) -> str:
        parts = [f"{v} {k}" for k, v in sorted(self.dropped.items())]
        if self.parse_error:
            parts.insert(0, self.parse_error)
        return ", ".join(parts) or "ok"


def clean_sentence(text: str) -> str:
    s = _WS.sub(" ", text).strip()
    for _ in range(2):  # "1. "Foo"" -> Foo
        s = _NUMBERING.sub("", s, count=1).strip()
        if len(s) >= 2 and s[0] in _QUOTES and s[-1] in _QUOTES:
            s = s[1:-1].strip()
        s = s.strip(_QUOTES).strip() if (s[:1] in _QUOTES) != (s[-1:] in _QUOTES) else s
    return s


def normalise_key(sentence: str) -> str:
    return re.sub(r"[^\w]+", " ", sentence.lower()).strip()


def _from_json(obj: Any) -> list[Any] | None:
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        if isinstance(obj.get("sentences"), list):
            return obj["sentences"]
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def extract_items(content: str | None) -> tuple[list[Any], str | None]:
    """Candidate sentences from raw content, and a parse problem (None if clean JSON)."""
    if content is None or not content.strip():
        return [], "empty response"
    text = content.strip()
    candidates = [text] + [m.group(1).strip() for m in _FENCE.finditer(text)]
    brace = text.find("{"), text.rfind("}")
    if 0 <= brace[0] < brace[1]:
        candidates.append(text[brace[0] : brace[1] + 1])
    for cand in candidates:
        try:  # strict=False: raw newlines inside a string (SmolLM2 writes them) are not worth losing the list
            items = _from_json(json.loads(cand, strict=False))
        except (json.JSONDecodeError, ValueError):
            continue
        if items is not None:
            return items, None
        return [], "JSON without a list of sentences"
    # Truncated JSON: keep the fully closed strings after the "sentences" key.
    idx = text.find('"sentences"')
    if idx >= 0:
        body = text[idx + len('"sentences"') :]
        bracket = body.find("[")
        if bracket >= 0:
            found = []
            for m in _JSON_STRING.finditer(body[bracket + 1 :]):
                try:
                    found.append(json.loads(f'"{m.group(1)}"'))
                except json.JSONDecodeError:
                    continue
            return found, "truncated JSON"
    if text.startswith(("{", "[")):
        return [], "malformed JSON"
    # Plain text: one sentence per non-empty line.
    return [line for line in text.splitlines() if line.strip()], "not JSON (plain lines)"


def validate_response(
    content: str | None,
    wanted: int,
    *,
    existing: Iterable[str] = (),
    max_words: int = 60,
    label: str | None = None,
) -> Validation:
    """Clean sentences from ``content``: at most ``wanted``, none duplicating ``existing``.

    With ``label`` (the skill's), a sentence that is the label and nothing else is dropped as
    ``label-only``: small models answer that way, and it teaches an encoder string matching, not
    what a job ad says (see the data-quality report, :mod:`skillgen.quality`)."""
    items, problem = extract_items(content)
    result = Validation(parse_error=problem)
    seen = {normalise_key(s) for s in existing}
    label_key = normalise_key(label) if label else None
    for item in items:
        if not isinstance(item, str):
            result.dropped["non-string"] += 1
            continue
        s = clean_sentence(item)
        if not s or not normalise_key(s):
            result.dropped["empty"] += 1
            continue
        if len(s.split()) > max_words or len(s) > MAX_CHARS:
            result.dropped["over-long"] += 1
            continue
        key = normalise_key(s)
        if key == label_key:
            result.dropped["label-only"] += 1
            continue
        if _PROMPT_ECHO.match(s):
            result.dropped["prompt-echo"] += 1
            continue
        if len(s.split()) < MIN_WORDS:
            result.dropped["too-short"] += 1
            continue
        if _PLACEHOLDER.search(s):
            result.dropped["placeholder"] += 1
            continue
        if key in seen:
            result.dropped["duplicate"] += 1
            continue
        if len(result.sentences) >= wanted:
            result.dropped["extra"] += 1
            continue
        seen.add(key)
        result.sentences.append(s)
    return result
