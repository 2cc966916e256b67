"""Batch JSONL lines for the skills still missing sentences, packed into input files within limits.

A line is exactly the request online mode would send (same prompt, sampling,
``response_format``, ``max_tokens`` = the configured ceiling, as nothing has
been learned yet about completion lengths), with ``custom_id`` = the request
key for a skill's first request and ``<key>:<n>:<missing-signature>`` for a
follow-up, the same scheme as online mode's ``X-Request-Key``, and the ``seed``
of :func:`skillgen.llm.client.request_seed` (a skill's first line carries the
seed its first online request would; ``repeat`` is the answers the key got so
far, by the manifest or the ledger, whichever holds more, as online mode counts
them, so a rerun of the driver writes the same lines).

A file is closed when it reaches ``batch_max_requests`` lines,
``batch_max_bytes``, the enqueued-token headroom or the spend headroom
(``worst_case_usd``: every prompt token and ``max_tokens`` completion tokens
at the batch price), so each file can be submitted as it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

from skillgen.llm.client import chat_params, max_tokens_param, request_seed
from skillgen.plan import SkillTask
from skillgen.config import GenerationConfig
from skillgen.llm.pricing import Price
from skillgen.llm.prompts import build_messages
from skillgen.llm.tokens import count_tokens

__all__ = ["AVOID_MAX", "BatchLine", "ENDPOINT", "Pack", "build_line", "custom_id_for", "pack"]

ENDPOINT = "/v1/chat/completions"
AVOID_MAX = 40  # sentences listed as "do not repeat" in a follow-up prompt (as online)


@dataclass(frozen=True)
class BatchLine:
    custom_id: str
    request_key: str
    skill_id: str
    label: str
    missing: tuple[int, ...]
    avoid: tuple[str, ...]
    text: str  # the JSONL line, newline included
    tokens: int  # prompt + max_tokens
    worst_case_usd: float

    def request_info(self) -> dict[str, Any]:
        """What collection needs to turn this line's answer into rows (stored in requests-NNNNN.json)."""
        return {"request_key": self.request_key, "skill_id": self.skill_id, "label": self.label,
                "missing": list(self.missing), "avoid": list(self.avoid)}


def custom_id_for(key: str, missing: list[int], n_sentences: int, attempt: int) -> str:
    if len(missing) == n_sentences and attempt == 0:
        return key
    sig = hashlib.sha1(",".join(map(str, missing)).encode()).hexdigest()[:8]
    return f"{key}:{attempt}:{sig}"


def build_line(config: GenerationConfig, task: SkillTask, attempt: int, price: Price) -> BatchLine:
    """One JSONL line for a task of :func:`skillgen.plan.build_tasks` (``attempt``: answers so far)."""
    skill = task.skill
    missing = list(task.missing)
    avoid = list(task.avoid)  # all kept sentences: validation drops repeats of any of them
    messages = build_messages(skill, len(missing), config.prompt_spec, avoid=avoid[-AVOID_MAX:])
    body = {"model": config.model, "messages": messages, max_tokens_param(config.model): config.max_tokens,
            **chat_params(config.model, config.temperature, config.top_p,
                          request_seed(config.seed, task.request_key, missing, max(attempt, task.answered)),
                          config.request_response_format())}
    custom_id = custom_id_for(task.request_key, missing, config.n_sentences, attempt)
    text = json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}, ensure_ascii=False) + "\n"
    prompt = count_tokens(config.model, messages)
    return BatchLine(custom_id, task.request_key, skill.skill_id, skill.label, tuple(missing), tuple(avoid), text,
                     prompt + config.max_tokens, price.cost(prompt, config.max_tokens))


@dataclass
class Pack:
    lines: list[BatchLine]
    bytes: int
    tokens: int
    worst_case_usd: float


def pack(lines: Iterable[BatchLine], max_requests: int, max_bytes: int, token_room: float,
         spend_room: float) -> Pack | None:
    """The next input file: lines in order until a limit is reached; None if not even one line fits."""
    out = Pack([], 0, 0, 0.0)
    for line in lines:
        size = len(line.text.encode())
        if (len(out.lines) >= max_requests or out.bytes + size > max_bytes or out.tokens + line.tokens > token_room
                or out.worst_case_usd + line.worst_case_usd > spend_room + 1e-12):
            break
        out.lines.append(line)
        out.bytes += size
        out.tokens += line.tokens
        out.worst_case_usd += line.worst_case_usd
    return out if out.lines else None
