"""The global rate and spend budget: one owner for limits that are per API key.

Provider limits (requests and tokens per minute) apply to the API key, not to
a process, so N workers on M nodes must share one budget. :class:`Budget` is a
plain, clock-injectable class (unit-tested without Ray); :class:`BudgetActor`
wraps it as the single Ray actor of a run.

Accounting, mirroring how OpenAI-style limiters debit:
- a request *reserves* its estimated prompt tokens (tiktoken) plus its
  ``max_tokens`` before it is sent; buckets refill continuously at limit/60
  per second up to the per-minute limit;
- on the response the reservation is *reconciled*: the prompt estimate is
  corrected to the reported usage, and unused completion tokens are refunded
  only if the endpoint bills actual usage (``refund_completion``), because a
  server that debits ``max_tokens`` would otherwise see us overspend;
- ``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*`` headers only ever
  tighten the local view (corrected for reservations made after the request
  was sent), ``x-ratelimit-limit-*`` supplies limits that were not configured,
  and a 429 pauses every worker for its ``Retry-After`` (cool-down);
- spend: settled cost plus the worst-case cost of in-flight requests must stay
  under the cap; once a request would cross it, no new request is granted,
  in-flight ones finish, and the run stops cleanly.

It also learns the completion-length distribution (tokens per sentence) so
``max_tokens`` can be sized to a high quantile instead of a loose ceiling:
the limiter debits ``max_tokens``, so a tight value is what lets useful
tokens approach the limit.
"""

from __future__ import annotations

import bisect
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

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
    """Token bucket holding up to ``limit`` units, refilled at ``limit / 60`` per second."""

    def __init__(self, limit: float | None, now: float):
        self.limit = limit
        self.level = float(limit) if limit else 0.0
        self.t = now

    @property
    def enabled(self) -> bool:
        return bool(self.limit)

    def refill(self, now: float) -> None:
        if self.limit and now > self.t:
            self.level = min(float(self.limit), self.level + (now - self.t) * self.limit / 60.0)
        self.t = max(self.t, now)

    def wait_for(self, amount: float) -> float:
        if not self.limit or self.level >= amount:
            return 0.0
        amount = min(amount, float(self.limit))  # a request larger than the limit waits for a full bucket
        return (amount - self.level) * 60.0 / self.limit

    def set_limit(self, limit: float, now: float) -> None:
        self.refill(now)
        if not self.limit:
            self.level = float(limit)
        self.limit = limit
        self.level = min(self.level, float(limit))


class LengthModel:
    """Running quantile of completion tokens per sentence (bounded reservoir)."""

    def __init__(self, quantile: float = 0.995, min_samples: int = 20, keep: int = 4096):
        self.quantile = quantile
        self.min_samples = min_samples
        self.keep = keep
        self.sorted: list[float] = []
        self.n = 0

    def add(self, completion_tokens: int, sentences_requested: int) -> None:
        if sentences_requested <= 0 or completion_tokens <= 0:
            return
        self.n += 1
        bisect.insort(self.sorted, completion_tokens / sentences_requested)
        if len(self.sorted) > self.keep:  # drop from the middle-ish to keep the tails
            del self.sorted[len(self.sorted) // 2]

    def per_sentence(self) -> float | None:
        if self.n < self.min_samples:
            return None
        i = min(len(self.sorted) - 1, math.ceil(self.quantile * len(self.sorted)) - 1)
        return self.sorted[max(0, i)]


@dataclass
class Reservation:
    rid: int
    worker: str
    tokens: int
    prompt: int
    completion: int
    cost: float  # worst case: prompt + max_tokens at the model's price
    t: float
    counter_after: float  # total tokens reserved up to and including this one


@dataclass
class BudgetStats:
    granted: int = 0
    settled: int = 0
    rate_limited: int = 0
    header_tightenings: int = 0
    cooldown_s: float = 0.0
    reserved_tokens: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spent_usd: float = 0.0
    cap_hit: bool = False
    stop_reason: str | None = None
    wait_by_limit: dict = field(default_factory=dict)


class Budget:
    """Request/token buckets, reservations, header & 429 tightening, spend cap, length model."""

    def __init__(
        self,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        input_tpm: int | None = None,
        output_tpm: int | None = None,
        spend_cap_usd: float | None = None,
        spent_before_usd: float = 0.0,
        price_in: float = 0.0,
        price_out: float = 0.0,
        refund_completion: bool = False,
        learn_limits: bool = True,
        quantile: float = 0.995,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.clock = clock
        now = clock()
        self.requests = Bucket(rpm, now)
        self.tokens = Bucket(tpm, now)
        self.input = Bucket(input_tpm, now)
        self.output = Bucket(output_tpm, now)
        self.configured = {"requests": rpm, "tokens": tpm}
        self.learn_limits = learn_limits
        self.spend_cap = spend_cap_usd
        self.spent_before = spent_before_usd
        self.price_in = price_in / 1e6
        self.price_out = price_out / 1e6
        self.refund_completion = refund_completion
        self.inflight: dict[int, Reservation] = {}
        self.inflight_cost = 0.0
        self.next_id = 1
        self.cooldown_until = 0.0
        self.reserved_counter = 0.0
        self.stopped: str | None = None
        self.lengths = LengthModel(quantile)
        self.stats = BudgetStats()

    # ---- reservations ----------------------------------------------------------

    def _refill(self, now: float) -> None:
        for b in (self.requests, self.tokens, self.input, self.output):
            b.refill(now)

    def spent(self) -> float:
        return self.spent_before + self.stats.spent_usd

    def reserve(self, worker: str, items: list[tuple[int, int]]) -> dict[str, Any]:
        """Grant a prefix of ``items`` (prompt_tokens, max_tokens); say how long to wait for the rest."""
        now = self.clock()
        self._refill(now)
        granted: list[int] = []
        wait = 0.0
        if self.stopped:
            return {"granted": granted, "wait": 0.0, "stop": self.stopped, "per_sentence": self.lengths.per_sentence()}
        if now < self.cooldown_until:
            return {"granted": granted, "wait": self.cooldown_until - now, "stop": None, "per_sentence": self.lengths.per_sentence()}
        for prompt, completion in items:
            tokens = prompt + completion
            cost = prompt * self.price_in + completion * self.price_out
            if self.spend_cap is not None and self.spent() + self.inflight_cost + cost > self.spend_cap + 1e-12:
                if not self.inflight and not granted:
                    self.stop("spend cap")
                else:
                    self.stats.cap_hit = True
                    wait = 0.25  # in-flight requests may settle cheaper than their worst case
                break
            waits = {
                "requests": self.requests.wait_for(1),
                "tokens": self.tokens.wait_for(tokens),
                "input": self.input.wait_for(prompt),
                "output": self.output.wait_for(completion),
            }
            worst = max(waits.values())
            if worst > 0:
                wait = worst
                name = max(waits, key=lambda k: waits[k])
                self.stats.wait_by_limit[name] = self.stats.wait_by_limit.get(name, 0) + 1
                break
            self.requests.level -= 1 if self.requests.enabled else 0
            if self.tokens.enabled:
                self.tokens.level -= tokens
            if self.input.enabled:
                self.input.level -= prompt
            if self.output.enabled:
                self.output.level -= completion
            self.reserved_counter += tokens
            rid = self.next_id
            self.next_id += 1
            self.inflight[rid] = Reservation(rid, worker, tokens, prompt, completion, cost, now, self.reserved_counter)
            self.inflight_cost += cost
            self.stats.granted += 1
            self.stats.reserved_tokens += tokens
            granted.append(rid)
        return {"granted": granted, "wait": wait, "stop": self.stopped, "per_sentence": self.lengths.per_sentence()}

    def settle(
        self,
        rid: int,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        sentences_requested: int = 0,
        headers: Mapping[str, str] | None = None,
        status: int | None = 200,
        retry_after: float | None = None,
        billed: bool = True,
    ) -> float:
        """Reconcile a reservation with what happened; returns the request's actual cost in USD."""
        now = self.clock()
        self._refill(now)
        res = self.inflight.pop(rid, None)
        if res is not None:
            self.inflight_cost -= res.cost
            if self.inflight_cost < 1e-12:
                self.inflight_cost = max(0.0, self.inflight_cost)
        self.stats.settled += 1
        cost = 0.0
        if status == 200 and billed and prompt_tokens is not None:
            completion_tokens = completion_tokens or 0
            cost = prompt_tokens * self.price_in + completion_tokens * self.price_out
            self.stats.spent_usd += cost
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
            self.lengths.add(completion_tokens, sentences_requested)
            if res is not None:
                delta = res.prompt - prompt_tokens  # positive: we over-reserved the prompt
                if self.refund_completion:
                    delta += res.completion - completion_tokens
                if self.tokens.enabled:
                    self.tokens.level = min(float(self.tokens.limit), self.tokens.level + delta)
                if self.input.enabled:
                    self.input.level = min(float(self.input.limit), self.input.level + (res.prompt - prompt_tokens))
                if self.output.enabled and self.refund_completion:
                    self.output.level = min(float(self.output.limit), self.output.level + res.completion - completion_tokens)
        elif res is not None and status is not None and status == 429:
            # The server rejected it before debiting: give the tokens back, but pause everyone.
            self.stats.rate_limited += 1
            self._refund(res)
            pause = retry_after if retry_after is not None else 1.0
            self.cooldown_until = max(self.cooldown_until, now + pause)
            self.stats.cooldown_s += pause
        elif res is not None and status is not None and 400 <= status < 500:
            self._refund(res)
        # 5xx / timeouts / drops: assume the server debited (conservative), nothing to refund.
        if headers and res is not None:
            self.observe_headers(headers, res, now)
        return cost

    def _refund(self, res: Reservation) -> None:
        if self.requests.enabled:
            self.requests.level = min(float(self.requests.limit), self.requests.level + 1)
        if self.tokens.enabled:
            self.tokens.level = min(float(self.tokens.limit), self.tokens.level + res.tokens)
        if self.input.enabled:
            self.input.level = min(float(self.input.limit), self.input.level + res.prompt)
        if self.output.enabled:
            self.output.level = min(float(self.output.limit), self.output.level + res.completion)

    def observe_headers(self, headers: Mapping[str, str], res: Reservation, now: float) -> None:
        h = {k.lower(): v for k, v in headers.items()}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            limit = h.get(f"x-ratelimit-limit-{kind}")
            if limit is not None and self.learn_limits and self.configured[kind] is None:
                try:
                    lim = float(limit)
                except ValueError:
                    lim = 0
                if lim > 0 and bucket.limit != lim:
                    bucket.set_limit(lim, now)
            remaining = h.get(f"x-ratelimit-remaining-{kind}")
            if remaining is None or not bucket.enabled:
                continue
            try:
                rem = float(remaining)
            except ValueError:
                continue
            # The server measured `rem` when this request arrived; since then it refilled and we
            # reserved more (which the server has not all seen yet).
            after = self.reserved_counter - res.counter_after if kind == "tokens" else float(
                sum(1 for r in self.inflight.values() if r.rid > res.rid)
            )
            refill = (now - res.t) * bucket.limit / 60.0
            server_view = rem + refill - after
            if server_view < bucket.level - 0.01 * bucket.limit:
                bucket.level = max(server_view, -float(bucket.limit))
                self.stats.header_tightenings += 1

    # ---- control ---------------------------------------------------------------

    def stop(self, reason: str) -> None:
        if not self.stopped:
            self.stopped = reason
            self.stats.stop_reason = reason
            if reason == "spend cap":
                self.stats.cap_hit = True

    def max_tokens_for(self, sentences: int, ceiling: int, margin: float = 1.15) -> int:
        per = self.lengths.per_sentence()
        if per is None:
            return ceiling
        return int(min(ceiling, max(32, math.ceil(per * sentences * margin + 16))))

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "granted": s.granted,
            "settled": s.settled,
            "inflight": len(self.inflight),
            "rate_limited": s.rate_limited,
            "header_tightenings": s.header_tightenings,
            "cooldown_s": round(s.cooldown_s, 3),
            "reserved_tokens": s.reserved_tokens,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "spent_usd": s.spent_usd,
            "spent_total_usd": self.spent(),
            "cap_hit": s.cap_hit,
            "stop_reason": self.stopped,
            "per_sentence": self.lengths.per_sentence(),
            "limits": {"rpm": self.requests.limit, "tpm": self.tokens.limit},
            "wait_by_limit": dict(s.wait_by_limit),
        }


class BudgetActor:
    """Thin Ray actor around :class:`Budget` (created with ``ray.remote`` in :mod:`skillgen.run`)."""

    def __init__(self, **kwargs: Any):
        self.budget = Budget(**kwargs)

    def exchange(self, worker: str, settles: list[dict[str, Any]], items: list[tuple[int, int]]) -> dict[str, Any]:
        """One round trip per worker tick: settle finished requests, then reserve for waiting ones."""
        costs = [self.budget.settle(s.pop("rid"), **s) for s in settles]
        out = self.budget.reserve(worker, items) if items else {
            "granted": [], "wait": 0.0, "stop": self.budget.stopped, "per_sentence": self.budget.lengths.per_sentence()
        }
        out["costs"] = costs
        return out

    def stop(self, reason: str) -> None:
        self.budget.stop(reason)

    def release_worker(self, worker: str) -> int:
        """Drop the reservations of a dead worker (their requests died with it; assume debited)."""
        dead = [rid for rid, r in self.budget.inflight.items() if r.worker == worker]
        for rid in dead:
            self.budget.settle(rid, status=None)
        return len(dead)

    def snapshot(self) -> dict[str, Any]:
        return self.budget.snapshot()
