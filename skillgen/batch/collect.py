"""A finished batch's output and error files turned into rows, exactly once.

Lines come back in any order and are matched to what was asked by
``custom_id`` (``requests-NNNNN.json``). A 200 line is validated exactly like
an online response (:func:`skillgen.llm.validate.validate_response`, against
every sentence the skill already had when the line was built) and its
sentences fill the line's missing ``sample_idx`` values in order; its cost
(usage at the batch price) is shared by those sentences, or, if none was
valid, kept as ``unattributed_usd`` on the manifest entry. A per-request
HTTP error counts as an answer (like a response) for the skill's attempt
limit; ``batch_expired``/``batch_cancelled`` and a failed batch do not.

The result depends only on the files and the request info, never on the run
dir's current rows, so collecting again after a crash gives the same rows.
The rows shard's name carries the run id and batch number: if it exists, the
rows are already on disk and only the manifest is brought up to date.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any


from skillgen.config import GenerationConfig
from skillgen.llm.pricing import Price
from skillgen.llm.validate import validate_response
from skillgen.rundir.ledger import Outcome, outcome_class
from skillgen.rundir.sinks import Row, utcnow

__all__ = ["Collected", "LineOutcome", "collect_lines", "shard_tag", "unprocessed_outcome"]

log = logging.getLogger(__name__)


@dataclass
class Collected:
    rows: list[Row] = field(default_factory=list)
    cost_usd: float = 0.0
    unattributed_usd: float = 0.0
    answered: set[str] = field(default_factory=set)  # request keys with a response or a per-request error
    problems: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: int = 0
    outcomes: dict[str, LineOutcome] = field(default_factory=dict)  # custom_id -> what the ledger records


@dataclass(frozen=True)
class LineOutcome:
    """One line's fate for the ledger: billed usage for a 200, else the outcome class (not billed)."""

    outcome: Outcome
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None


# batch-level error codes of lines the batch never processed (the provider bills processed lines only)
_UNPROCESSED = {"batch_expired": Outcome.EXPIRED, "batch_cancelled": Outcome.BATCH_CANCELLED}
_ENDED = {"expired": Outcome.EXPIRED, "cancelled": Outcome.BATCH_CANCELLED, "failed": Outcome.BATCH_FAILED}


def unprocessed_outcome(batch_status: str) -> Outcome:
    """The outcome of a line with no result at all once its batch ended with ``batch_status``."""
    return _ENDED.get(batch_status, Outcome.BATCH_FAILED)


def _lines(text: str) -> list[dict[str, Any]]:
    out = []
    for raw in text.splitlines():
        if raw.strip():
            try:
                out.append(json.loads(raw))
            except ValueError:
                log.warning("batch result line is not JSON; ignored: %.120s", raw)
    return out


def collect_lines(config: GenerationConfig, price: Price, requests: dict[str, dict[str, Any]], output_text: str,
                  error_text: str) -> Collected:
    res = Collected()
    now = utcnow()
    for item in _lines(output_text) + _lines(error_text):
        info = requests.get(str(item.get("custom_id")))
        if info is None:
            log.warning("batch result for an unknown custom_id %r ignored", item.get("custom_id"))
            continue
        key, cid = info["request_key"], str(item.get("custom_id"))
        response = item.get("response") or {}
        status = response.get("status_code")
        if status == 200 and isinstance(response.get("body"), dict):
            res.answered.add(key)
            res.outcomes[cid] = _accept(config, price, info, response["body"], res, now)
        elif status is not None:
            res.answered.add(key)
            err = ((response.get("body") or {}).get("error") or {}) if isinstance(response.get("body"), dict) else {}
            res.problems[key] = f"HTTP {status}: {str(err.get('message', ''))[:300]}"
            res.outcomes[cid] = LineOutcome(outcome_class(int(status), None))
        else:
            err = item.get("error") or {}
            res.problems[key] = f"{err.get('code', 'error')}: {str(err.get('message', ''))[:300]}"
            res.outcomes[cid] = LineOutcome(_UNPROCESSED.get(str(err.get("code")), Outcome.BATCH_FAILED))
    return res


def _accept(config: GenerationConfig, price: Price, info: dict[str, Any], body: dict[str, Any], res: Collected,
            now: Any) -> LineOutcome:
    choices = body.get("choices") or [{}]
    content = (choices[0].get("message") or {}).get("content")
    finish = choices[0].get("finish_reason")
    usage = body.get("usage") or {}
    pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cost = price.cost(pt, ct)
    res.cost_usd += cost
    res.prompt_tokens += pt
    res.completion_tokens += ct
    missing = list(info["missing"])
    v = validate_response(content, len(missing), existing=info["avoid"], max_words=config.max_sentence_words,
                          label=info["label"])
    if finish == "length":
        res.truncated += 1
        v.parse_error = v.parse_error or "truncated"
    if len(v.sentences) < len(missing):
        res.problems[info["request_key"]] = f"{v.describe()} (finish_reason={finish})"
    billed = LineOutcome(Outcome.OK, pt, ct, cost)
    if not v.sentences:
        res.unattributed_usd += cost
        return billed
    share = cost / len(v.sentences)
    for sentence, idx in zip(v.sentences, missing):
        res.rows.append(Row(info["skill_id"], info["label"], sentence, idx, info["request_key"], config.model,
                            config.prompt_version, pt, ct, share, now))
    return billed


def shard_tag(run_id: str, seq: int) -> str:
    """The tag in the name of a batch's one row shard: collection replayed after a crash writes it once."""
    return f"batch-{run_id}-{seq:05d}"
