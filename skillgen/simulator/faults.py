"""Injected failures: which kinds exist, which one (if any) hits a request.

The generation client must survive everything a real endpoint does to it, so
the simulator can inject each failure on demand. One seeded RNG draws at most
one fault per admitted request, in arrival order, so a sequential test run is
reproducible from ``seed`` alone. Kinds fall in three groups, by where the
server applies them (see :mod:`skillgen.simulator.server`):

- *rejections* (before rate limiting, cost nothing): ``429`` (a spurious rate
  limit), ``context_length``, ``invalid_key``, ``insufficient_quota``;
- *failures* (after admission and latency): ``500``/``502``/``503``,
  ``hang`` (no answer for ``hang_seconds``, then a 504 if the client is
  still waiting), ``drop`` (connection closed without a response);
- *degraded content* (a billed 200): ``malformed`` JSON, ``wrong_count``
  sentences, ``empty`` content.
"""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Mapping

__all__ = ["CONTENT_FAULTS", "FaultInjector", "FaultKind", "REJECTIONS", "SERVER_STATUS", "corrupt_json",
           "parse_fault_kind", "wrong_count"]


class FaultKind(StrEnum):
    """A fault's name as used by ``--fault-rate``, ``X-Sim-Fault`` and the stats."""

    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    BAD_GATEWAY = "502"
    UNAVAILABLE = "503"
    HANG = "hang"
    DROP = "drop"
    MALFORMED = "malformed"
    WRONG_COUNT = "wrong_count"
    EMPTY = "empty"
    CONTEXT_LENGTH = "context_length"
    INVALID_KEY = "invalid_key"
    INSUFFICIENT_QUOTA = "insufficient_quota"


REJECTIONS = frozenset({FaultKind.RATE_LIMIT, FaultKind.CONTEXT_LENGTH, FaultKind.INVALID_KEY, FaultKind.INSUFFICIENT_QUOTA})
SERVER_STATUS = {FaultKind.SERVER_ERROR: 500, FaultKind.BAD_GATEWAY: 502, FaultKind.UNAVAILABLE: 503}
CONTENT_FAULTS = frozenset({FaultKind.MALFORMED, FaultKind.WRONG_COUNT, FaultKind.EMPTY})


def parse_fault_kind(name: str) -> FaultKind:
    """``"500"`` -> ``FaultKind.SERVER_ERROR``; a ValueError lists the valid names."""
    try:
        return FaultKind(name.strip().lower())
    except ValueError:
        valid = ", ".join(k.value for k in FaultKind)
        raise ValueError(f"unknown fault kind {name!r} (valid: {valid})") from None


class FaultInjector:
    """Draws at most one fault per request from a seeded RNG, by configured rate."""

    def __init__(self, rates: Mapping[FaultKind, float], seed: int) -> None:
        self._rng = random.Random(f"faults:{seed}")
        # Cumulative thresholds in a fixed (enum) order so a seed means the same sequence everywhere.
        self._thresholds: list[tuple[float, FaultKind]] = []
        total = 0.0
        for kind in FaultKind:
            rate = rates.get(kind, 0.0)
            if rate > 0:
                total += rate
                self._thresholds.append((total, kind))

    def draw(self) -> FaultKind | None:
        """The fault for the next request, or None (no RNG use when no fault is configured)."""
        if not self._thresholds:
            return None
        u = self._rng.random()
        for threshold, kind in self._thresholds:
            if u < threshold:
                return kind
        return None


def wrong_count(n: int, rng: random.Random) -> int:
    """A sentence count that is not ``n``: one short, one over, or half, as LLMs miscount."""
    options = {n + 1, n + 2, n // 2, n - 1}
    options.discard(n)
    return rng.choice(sorted(c for c in options if c >= 0))


def corrupt_json(content: str, rng: random.Random) -> str:
    """JSON text broken the ways LLM output breaks; unparseable even after stripping code fences."""
    style = rng.randrange(3)
    if style == 0 or len(content) < 8:
        # Cut off mid-string, as when the model stops early.
        return content[: max(1, int(len(content) * rng.uniform(0.3, 0.9)))].rstrip('"}] ') + ' "'
    if style == 1:
        # Trailing comma and a missing closing brace.
        body = content.rstrip().rstrip("}").rstrip().rstrip("]")
        return body + ",]"
    # Python repr instead of JSON, inside a chatty preamble.
    return "Sure! Here are the sentences: " + content.replace('"', "'")
