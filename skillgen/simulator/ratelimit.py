"""Per-API-key rate limits the way OpenAI enforces them.

Two continuously refilling token buckets per key: requests (cost 1) and
tokens (cost = prompt tokens + the completion tokens the request may use).
Each holds at most its per-minute limit and refills at limit/60 per second,
so a fresh key may burst a full minute's allowance and then sustains the
limit. A request is admitted only if *both* buckets cover it, and is then
charged to both; otherwise it is rejected at once (never queued), which is
what makes a client's own pacing observable. The ``x-ratelimit-*`` headers
are read off the same buckets, so they agree with the enforcement exactly;
``x-sim-limiter-time`` (see :data:`CLOCK_HEADER`) says when it judged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

__all__ = ["Admission", "CLOCK_HEADER", "LimitType", "RateLimiter", "TokenBucket", "format_duration"]

LimitType = Literal["requests", "tokens"]
# Not an OpenAI header: the limiter's clock (monotonic seconds) when it judged the request. It lets a
# test measure a rate window in the limiter's own time, free of client-side scheduling jitter.
CLOCK_HEADER = "x-sim-limiter-time"


def format_duration(seconds: float) -> str:
    """A duration as OpenAI's headers write it (Go style): ``6m0s``, ``1s``, ``8.64s``, ``120ms``.

    Rounded *up* to the millisecond, so a client that waits this long is never early.
    """
    if seconds <= 0:
        return "0s"
    if math.isinf(seconds):
        seconds = 24 * 3600.0
    ms = math.ceil(seconds * 1000 - 1e-6)
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}" if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{secs}s"


class TokenBucket:
    """Capacity ``per_minute``, refilled continuously at ``per_minute / 60`` per second."""

    __slots__ = ("capacity", "rate", "level", "updated")

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, cost: float) -> float:
        """Seconds until the bucket covers ``cost`` (0 if it does now, inf if it never can)."""
        if cost > self.capacity:
            return math.inf
        return max(0.0, (cost - self.level) / self.rate)

    def time_to_full(self) -> float:
        return (self.capacity - self.level) / self.rate

    def remaining(self) -> int:
        return max(0, math.floor(self.level + 1e-9))


@dataclass(frozen=True)
class Admission:
    """The limiter's answer for one request."""

    allowed: bool
    headers: dict[str, str]
    limited_by: LimitType | None = None
    retry_after: float = 0.0  # seconds until both buckets cover the request; inf: never (too large)
    limit: int = 0  # of the binding dimension, for the error message
    used: int = 0
    requested: int = 0


@dataclass
class _KeyBuckets:
    requests: TokenBucket | None
    tokens: TokenBucket | None
    buckets: tuple[tuple[LimitType, TokenBucket], ...] = field(init=False)

    def __post_init__(self) -> None:
        self.buckets = tuple((name, b) for name, b in (("requests", self.requests), ("tokens", self.tokens)) if b)


class RateLimiter:
    """RPM and TPM per API key; a limit of 0 is not enforced and sends no headers for that dimension."""

    def __init__(self, rpm: int, tpm: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._keys: dict[str, _KeyBuckets] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.rpm or self.tpm)

    def _buckets(self, key: str, create: bool = True) -> _KeyBuckets | None:
        state = self._keys.get(key)
        if state is None and create:
            now = self._clock()
            state = _KeyBuckets(
                TokenBucket(self.rpm, now) if self.rpm else None,
                TokenBucket(self.tpm, now) if self.tpm else None,
            )
            self._keys[key] = state
        return state

    def admit(self, key: str, cost_tokens: int) -> Admission:
        """Charge one request of ``cost_tokens`` to ``key`` if both buckets cover it, else reject."""
        if not self.enabled:
            return Admission(True, {})
        state = self._buckets(key)
        assert state is not None
        now = self._clock()
        costs: dict[LimitType, float] = {"requests": 1.0, "tokens": float(cost_tokens)}
        waits: dict[LimitType, float] = {}
        for name, bucket in state.buckets:
            bucket.refill(now)
            waits[name] = bucket.wait_for(costs[name])
        binding = max(waits, key=lambda n: waits[n])
        if waits[binding] > 0:
            bucket = state.requests if binding == "requests" else state.tokens
            assert bucket is not None
            return Admission(
                False,
                {**self._headers(state), CLOCK_HEADER: f"{now:.6f}"},
                limited_by=binding,
                retry_after=waits[binding],
                limit=int(bucket.capacity),
                used=int(round(bucket.capacity - bucket.level)),
                requested=int(costs[binding]),
            )
        for name, bucket in state.buckets:
            bucket.level -= costs[name]
        return Admission(True, {**self._headers(state), CLOCK_HEADER: f"{now:.6f}"})

    def headers(self, key: str) -> dict[str, str]:
        """Current headers for ``key`` without charging (an unseen key reports full buckets)."""
        if not self.enabled:
            return {}
        state = self._buckets(key, create=False)
        if state is None:
            return self._headers(_KeyBuckets(
                TokenBucket(self.rpm, 0.0) if self.rpm else None,
                TokenBucket(self.tpm, 0.0) if self.tpm else None,
            ))
        now = self._clock()
        for _, bucket in state.buckets:
            bucket.refill(now)
        return self._headers(state)

    @staticmethod
    def _headers(state: _KeyBuckets) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, bucket in state.buckets:
            out[f"x-ratelimit-limit-{name}"] = str(int(bucket.capacity))
            out[f"x-ratelimit-remaining-{name}"] = str(bucket.remaining())
            out[f"x-ratelimit-reset-{name}"] = format_duration(bucket.time_to_full())
        return out
