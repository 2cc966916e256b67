"""What the simulator did, so tests can check the client's bookkeeping against it.

Every chat-completion request ends in exactly one outcome, which gives the
invariant ``received == served + sum(failed) + client_disconnected + in_flight``
(for requests received since the last reset):

- ``served``: a 200 response was written. Served responses are *billed*:
  their ``usage`` prompt and completion tokens are added to
  ``prompt_tokens_billed`` / ``completion_tokens_billed``. Degraded-content
  faults (``malformed``, ``wrong_count``, ``empty``) are 200s, so they are
  served and billed too (as OpenAI bills whatever the model generated); they
  are also counted under ``degraded``. Nothing else is ever billed.
- ``failed[reason]``: any non-200 outcome. Reasons: ``rate_limited`` (the
  buckets said no; split by type in ``rate_limited_by_type``),
  ``bad_request``, ``unauthorized``, ``context_length_exceeded`` (a genuinely
  too long request), ``internal_error`` (a simulator bug), and each injected
  fault kind by its name (``429``, ``500``, ``502``, ``503``, ``hang``,
  ``drop``, ``context_length``, ``invalid_key``, ``insufficient_quota``).
- ``client_disconnected``: the client went away (e.g. its timeout) before a
  response that would have been a 200 was written; not billed.

``served_by_key`` / ``received_by_key`` count requests per ``X-Request-Key``
header (requests without the header are not listed), so a test can prove no
key was served twice.

The document (``GET /v1/stats``, ``--stats-file``): ``received``, ``served``,
``in_flight``, ``client_disconnected``, ``failed`` {reason: n},
``failed_total``, ``rate_limited_by_type`` {"requests"|"tokens": n},
``degraded`` {kind: n}, ``prompt_tokens_billed``, ``completion_tokens_billed``,
``served_by_key`` {key: n}, ``received_by_key`` {key: n}, ``uptime_s``,
``since_reset_s``, ``config`` (limits, latency, fault rates, seed; never the
key), and from the server ``warm`` (tokenizers loaded).

Batch API (:mod:`.batches`) lines are billed separately, at the batch price,
when the simulated model processes them (also in a batch that later expires
or is cancelled, as at OpenAI): ``batch_billed_by_custom_id`` {custom_id: n},
``batch_prompt_tokens_billed``, ``batch_completion_tokens_billed``,
``batch_cost_usd`` (the shipped price table's batch price; 0 for unknown
models), ``batch_line_errors`` {reason: n} (not billed), ``files_uploaded``
{filename: n} (purpose ``batch`` uploads) and ``batches_created`` {status: n}.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from skillgen.common.atomic import write_atomic

__all__ = ["RATE_LIMITED", "RequestOutcome", "SimulatorStats"]

RATE_LIMITED = "rate_limited"


class RequestOutcome:
    """The one outcome of one request; settle it once, then :meth:`close` it in a ``finally``."""

    __slots__ = ("_stats", "_generation", "key", "settled")

    def __init__(self, stats: "SimulatorStats", key: str | None) -> None:
        self._stats = stats
        self._generation = stats.generation
        self.key = key
        self.settled = False

    def _current(self) -> bool:
        return self._generation == self._stats.generation

    def fail(self, reason: str) -> None:
        if self.settled:
            return
        self.settled = True
        if self._current():
            self._stats.failed[reason] += 1

    def serve(self, prompt_tokens: int, completion_tokens: int, degraded: str | None = None) -> None:
        if self.settled:
            return
        self.settled = True
        if not self._current():
            return
        stats = self._stats
        stats.served += 1
        stats.prompt_tokens_billed += prompt_tokens
        stats.completion_tokens_billed += completion_tokens
        if degraded:
            stats.degraded[degraded] += 1
        if self.key is not None:
            stats.served_by_key[self.key] += 1

    def close(self, disconnected: bool = False) -> None:
        """End of the handler: an unsettled request was cut off by the client or broke the server."""
        self._stats.in_flight -= 1
        if not self.settled:
            self.settled = True
            if self._current():
                if disconnected:
                    self._stats.client_disconnected += 1
                else:
                    self._stats.failed["internal_error"] += 1


class SimulatorStats:
    """Counters of one server; touched only from the server's event loop."""

    def __init__(self) -> None:
        self.started = time.time()
        self.in_flight = 0
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        """Zero every counter; requests in flight keep counting in ``in_flight`` only."""
        self.generation += 1
        self.reset_at = time.time()
        self.received = 0
        self.served = 0
        self.client_disconnected = 0
        self.failed: Counter[str] = Counter()
        self.degraded: Counter[str] = Counter()
        self.rate_limited_by_type: Counter[str] = Counter()
        self.prompt_tokens_billed = 0
        self.completion_tokens_billed = 0
        self.served_by_key: Counter[str] = Counter()
        self.received_by_key: Counter[str] = Counter()
        self.batch_billed_by_custom_id: Counter[str] = Counter()
        self.batch_prompt_tokens_billed = 0
        self.batch_completion_tokens_billed = 0
        self.batch_cost_usd = 0.0
        self.batch_line_errors: Counter[str] = Counter()
        self.files_uploaded: Counter[str] = Counter()
        self.batches_created = 0

    def bill_batch_line(self, custom_id: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        self.batch_billed_by_custom_id[custom_id] += 1
        self.batch_prompt_tokens_billed += prompt_tokens
        self.batch_completion_tokens_billed += completion_tokens
        self.batch_cost_usd += cost_usd

    def begin(self, key: str | None) -> RequestOutcome:
        self.received += 1
        self.in_flight += 1
        if key is not None:
            self.received_by_key[key] += 1
        return RequestOutcome(self, key)

    def rate_limited(self, outcome: RequestOutcome, limit_type: str) -> None:
        if not outcome.settled:
            self.rate_limited_by_type[limit_type] += 1
        outcome.fail(RATE_LIMITED)

    def snapshot(self, config_summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``GET /v1/stats`` document (plain JSON types only)."""
        now = time.time()
        return {
            "received": self.received,
            "served": self.served,
            "in_flight": self.in_flight,
            "client_disconnected": self.client_disconnected,
            "failed": dict(self.failed),
            "failed_total": sum(self.failed.values()),
            "rate_limited_by_type": dict(self.rate_limited_by_type),
            "degraded": dict(self.degraded),
            "prompt_tokens_billed": self.prompt_tokens_billed,
            "completion_tokens_billed": self.completion_tokens_billed,
            "served_by_key": dict(self.served_by_key),
            "received_by_key": dict(self.received_by_key),
            "batch_billed_by_custom_id": dict(self.batch_billed_by_custom_id),
            "batch_prompt_tokens_billed": self.batch_prompt_tokens_billed,
            "batch_completion_tokens_billed": self.batch_completion_tokens_billed,
            "batch_cost_usd": self.batch_cost_usd,
            "batch_line_errors": dict(self.batch_line_errors),
            "files_uploaded": dict(self.files_uploaded),
            "batches_created": self.batches_created,
            "uptime_s": round(now - self.started, 3),
            "since_reset_s": round(now - self.reset_at, 3),
            "config": config_summary or {},
        }

    def write(self, path: Path, config_summary: dict[str, Any] | None = None) -> None:
        """Write the snapshot atomically (a reader never sees half a file)."""
        write_atomic(path, json.dumps(self.snapshot(config_summary), indent=2, sort_keys=True) + "\n")
