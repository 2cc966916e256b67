"""The rate limiter: requests and tokens per minute for one API key, shared by every worker of a run.

Provider limits apply to the API key, not to a process, so the run's one budget
(:mod:`skillgen.online.budget`, in one Ray actor) owns one :class:`RateLimiter`. It
mirrors how OpenAI-style limiters debit:

- a request *takes* its estimated prompt tokens (tiktoken) plus its
  ``max_tokens`` before it is sent; buckets refill continuously at limit/60
  per second up to the per-minute limit;
- on the response the debit is *reconciled*: the prompt estimate is corrected
  to the reported usage, and unused completion tokens are given back only if
  the endpoint bills actual usage (``refund_completion``), because a server
  that debits ``max_tokens`` would otherwise see us overspend;
- ``x-ratelimit-remaining-*`` headers only ever tighten the local view
  (corrected for what was taken after the request was sent),
  ``x-ratelimit-limit-*`` supplies limits that were not configured, and a 429
  pauses every worker for its ``Retry-After`` (cool-down).

Every method takes ``now`` (seconds, any monotonic clock): the caller owns the clock, the tests pass numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["Bucket", "LimiterStats", "RateLimiter", "RateLimits", "parse_reset"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_reset(value: str | None) -> float | None:
    """OpenAI reset durations (``1s``, ``6m0s``, ``120ms``, ``1h2m3.5s``) in seconds."""
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    total, matched = 0.0, False
    for num, unit in _DURATION.findall(value):
        matched = True
        total += float(num) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    return total if matched else None


class Bucket:
    """Token bucket holding up to ``limit`` units, refilled at ``limit / 60`` per second (no limit: always full)."""

    def __init__(self, limit: float | None, now: float):
        self.limit = limit
        self.level = float(limit) if limit else 0.0
        self.t = now

    def refill(self, now: float) -> None:
        if self.limit and now > self.t:
            self.level = min(float(self.limit), self.level + (now - self.t) * self.limit / 60.0)
        self.t = max(self.t, now)

    def wait_for(self, amount: float) -> float:
        if not self.limit or self.level >= amount:
            return 0.0
        amount = min(amount, float(self.limit))  # a request larger than the limit waits for a full bucket
        return (amount - self.level) * 60.0 / self.limit

    def move(self, amount: float) -> None:
        """Credit (positive, never above the limit) or debit (negative) ``amount``."""
        if self.limit:
            self.level = min(float(self.limit), self.level + amount) if amount > 0 else self.level + amount

    def set_limit(self, limit: float, now: float) -> None:
        self.refill(now)
        if not self.limit:
            self.level = float(limit)
        self.limit = limit
        self.level = min(self.level, float(limit))


@dataclass(frozen=True)
class RateLimits:
    """The limits of one API key (None: unknown, learned from response headers when ``learn_limits``)."""

    rpm: int | None = None
    tpm: int | None = None
    input_tpm: int | None = None
    output_tpm: int | None = None
    refund_completion: bool = False  # the endpoint debits actual completion tokens, not max_tokens
    learn_limits: bool = True


@dataclass
class LimiterStats:
    rate_limited: int = 0
    header_tightenings: int = 0
    cooldown_s: float = 0.0
    wait_by_limit: dict[str, int] = field(default_factory=dict)  # which limit made a request wait, how often


class RateLimiter:
    """Four buckets (requests, tokens, input tokens, output tokens), a cool-down, and what headers teach."""

    def __init__(self, limits: RateLimits = RateLimits(), now: float = 0.0):
        self.limits = limits
        self.requests = Bucket(limits.rpm, now)
        self.tokens = Bucket(limits.tpm, now)
        self.input = Bucket(limits.input_tpm, now)
        self.output = Bucket(limits.output_tpm, now)
        self.cooldown_until = 0.0
        self.taken = 0.0  # tokens taken so far: a header's view is corrected by what was taken after its request
        self.stats = LimiterStats()

    def refill(self, now: float) -> None:
        for bucket in (self.requests, self.tokens, self.input, self.output):
            bucket.refill(now)

    def cooldown(self, now: float) -> float:
        """Seconds every worker still waits after a 429 (0: none)."""
        return max(0.0, self.cooldown_until - now)

    def wait_for(self, prompt: int, completion: int) -> float:
        """Seconds until a request of this size fits every bucket (0: now); counts which limit binds."""
        waits = {"requests": self.requests.wait_for(1), "tokens": self.tokens.wait_for(prompt + completion),
                 "input": self.input.wait_for(prompt), "output": self.output.wait_for(completion)}
        binding = max(waits, key=lambda k: waits[k])
        if waits[binding] > 0:
            self.stats.wait_by_limit[binding] = self.stats.wait_by_limit.get(binding, 0) + 1
        return waits[binding]

    def take(self, prompt: int, completion: int) -> float:
        """Debit one request; returns the tokens taken so far (its mark for :meth:`observe`)."""
        self._move(-1, -prompt, -completion)
        self.taken += prompt + completion
        return self.taken

    def give_back(self, prompt: int, completion: int) -> None:
        """The server rejected the request before debiting it (4xx, 429) or it was never sent."""
        self._move(1, prompt, completion)

    def reconcile(self, reserved_prompt: int, reserved_completion: int, prompt_tokens: int, completion_tokens: int) -> None:
        """A 200: correct the prompt estimate; give back unused completion tokens only where they are not debited."""
        unused_out = reserved_completion - completion_tokens if self.limits.refund_completion else 0
        self.tokens.move(reserved_prompt - prompt_tokens + unused_out)
        self.input.move(reserved_prompt - prompt_tokens)
        self.output.move(unused_out)

    def pause(self, retry_after: float | None, now: float) -> None:
        """A 429 pauses every worker for its ``Retry-After`` (1 s without one)."""
        self.stats.rate_limited += 1
        pause = retry_after if retry_after is not None else 1.0
        self.cooldown_until = max(self.cooldown_until, now + pause)
        self.stats.cooldown_s += pause

    def observe(self, headers: Mapping[str, str], sent_at: float, mark: float, requests_after: int, now: float) -> None:
        """Tighten from ``x-ratelimit-*`` headers of a request sent at ``sent_at`` with ``mark`` (from :meth:`take`),
        while ``requests_after`` later requests were in flight; learn limits that were not configured."""
        h = {k.lower(): v for k, v in headers.items()}
        configured = {"requests": self.limits.rpm, "tokens": self.limits.tpm}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            limit = _number(h.get(f"x-ratelimit-limit-{kind}"))
            if limit and limit > 0 and self.limits.learn_limits and configured[kind] is None and bucket.limit != limit:
                bucket.set_limit(limit, now)
            remaining = _number(h.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is None or not bucket.limit:
                continue
            # The server measured `remaining` when this request arrived; since then it refilled and we
            # took more (which the server has not all seen yet).
            after = self.taken - mark if kind == "tokens" else float(requests_after)
            server_view = remaining + (now - sent_at) * bucket.limit / 60.0 - after
            if server_view < bucket.level - 0.01 * bucket.limit:
                bucket.level = max(server_view, -float(bucket.limit))
                self.stats.header_tightenings += 1

    def _move(self, requests: float, prompt: float, completion: float) -> None:
        """The one place a whole request is debited (negative) or credited (positive) on every bucket."""
        for bucket, amount in ((self.requests, requests), (self.tokens, prompt + completion),
                               (self.input, prompt), (self.output, completion)):
            bucket.move(amount)


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
