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
  in-flight ones finish, and the run stops cleanly. Settled cost is what the
  request ledger (:mod:`skillgen.rundir.ledger`) says: usage for 200s, $0 for
  rejections, and for unknown outcomes (timeout, lost connection, dead
  worker) the ``unknown_outcome`` policy -- the worst case by default. Every
  grant is written to the ledger *before* it is handed out.

It also learns the completion-length distribution (tokens per sentence) so
``max_tokens`` can be sized to a high quantile instead of a loose ceiling:
the limiter debits ``max_tokens``, so a tight value is what lets useful
tokens approach the limit.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from skillgen.llm.tokens import size_max_tokens
from skillgen.summary import StopReason
from skillgen.online.messages import ExchangeReply, ReserveItem, Settlement  # noqa: F401 (re-exported)
from skillgen.rundir.ledger import UNKNOWN_OUTCOMES, LedgerWriter, Outcome, OutcomeEvent, SentEvent, outcome_class, unknown_cost

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")

log = logging.getLogger(__name__)


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

    def debit(self, amount: float) -> None:
        if self.limit:
            self.level -= amount

    def credit(self, amount: float) -> None:
        """Give back ``amount`` (never above the limit)."""
        if self.limit:
            self.level = min(float(self.limit), self.level + amount)

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
    request_key: str = ""
    attempt: int = 0


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


@dataclass
class BudgetSnapshot(BudgetStats):
    """The budget's state (budget actor -> driver, every tick): its counters and what it holds now.
    ``settle_seq``: the mark the driver passes to :meth:`BudgetActor.persisted` once the rows drained after
    this snapshot are on disk."""

    inflight: int = 0
    spent_total_usd: float = 0.0  # the run dir's, with in-flight worst cases
    per_sentence: float | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    settle_seq: int | None = None


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
        unknown_outcome: str = "worst_case",
        ledger: LedgerWriter | None = None,
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
        unknown_cost(unknown_outcome, 0.0, 0.0)  # ValueError now, not at the first timeout
        self.unknown_outcome = unknown_outcome
        self.ledger = ledger
        # 200 outcomes wait here until the rows they produced are on disk (see :meth:`persisted`)
        self.settle_seq = 0
        self.held_ok: list[tuple[int, float, OutcomeEvent]] = []
        self.held_margin = 0.0  # worst case minus actual cost of the held 200s: still counted against the cap
        self.instance = uuid.uuid4().hex[:12]  # attempt ids stay unique across runs and restarts

    # ---- reservations ----------------------------------------------------------

    def _refill(self, now: float) -> None:
        for b in (self.requests, self.tokens, self.input, self.output):
            b.refill(now)

    def spent(self) -> float:
        return self.spent_before + self.stats.spent_usd

    def persisted(self, upto_seq: int) -> int:
        """The driver wrote the rows of every 200 settled up to ``upto_seq``: their outcomes go to the ledger.

        Why wait: the ledger must never say an answer was received while its rows could still be lost. If
        the run dies first, the attempt stays ``unknown`` (counted at its worst case) and a rerun redoes it.
        Workers report rows to the scheduler before settling, and the driver takes this mark before draining
        the scheduler, so every 200 up to the mark has its rows in what the driver drained."""
        keep = []
        for seq, margin, event in self.held_ok:
            if seq <= upto_seq:
                self.ledger.add(event)
                self.held_margin = max(0.0, self.held_margin - margin)
            else:
                keep.append((seq, margin, event))
        released = len(self.held_ok) - len(keep)
        self.held_ok = keep
        return released

    def attempt_id(self, rid: int) -> str:
        return f"{self.instance}-{rid}"

    def reserve(self, worker: str, items: list[ReserveItem | tuple[int, int]]) -> dict[str, Any]:
        """Grant a prefix of ``items`` (:class:`ReserveItem` or (prompt, max_tokens)); say how long to wait for the rest."""
        now = self.clock()
        self._refill(now)
        granted: list[int] = []
        wait = 0.0
        if self.stopped:
            return {"granted": granted, "wait": 0.0, "stop": self.stopped, "per_sentence": self.lengths.per_sentence()}
        if now < self.cooldown_until:
            return {"granted": granted, "wait": self.cooldown_until - now, "stop": None, "per_sentence": self.lengths.per_sentence()}
        for item in items:
            item = item if isinstance(item, ReserveItem) else ReserveItem(*item)
            prompt, completion = item.prompt_tokens, item.max_tokens
            tokens = prompt + completion
            cost = prompt * self.price_in + completion * self.price_out
            # what the ledger would say if everything stopped now: settled + in flight + held 200s at worst
            committed = self.spent() + self.inflight_cost + self.held_margin
            if self.spend_cap is not None and committed + cost > self.spend_cap + 1e-12:
                if not self.inflight and not granted and not self.held_ok:
                    self.stop(StopReason.SPEND_CAP)
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
            self._move(-1, -prompt, -completion)
            self.reserved_counter += tokens
            rid = self.next_id
            self.next_id += 1
            res = Reservation(rid, worker, tokens, prompt, completion, cost, now, self.reserved_counter,
                              item.request_key, item.attempt)
            self.inflight[rid] = res
            if self.ledger is not None:
                self.ledger.add(SentEvent(self.attempt_id(rid), item.request_key, item.attempt, worker, prompt,
                                          completion, cost, prompt * self.price_in))
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
        error_class: str | None = None,
    ) -> float:
        """Reconcile a reservation with what happened; returns what the attempt is counted as costing (USD)."""
        now = self.clock()
        self._refill(now)
        res = self.inflight.pop(rid, None)
        if res is not None:
            self.inflight_cost = max(0.0, self.inflight_cost - res.cost)
        self.stats.settled += 1
        if status == 200 and prompt_tokens is None:
            status, error_class = None, "bad_response"  # a 200 without usage: we cannot know what it cost
        outcome = outcome_class(status, error_class)
        cost = 0.0
        if outcome == Outcome.OK:
            completion_tokens = completion_tokens or 0
            cost = prompt_tokens * self.price_in + completion_tokens * self.price_out
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
            self.lengths.add(completion_tokens, sentences_requested)
            if res is not None:
                # positive: we over-reserved; completion is given back only where the endpoint bills usage
                unused_out = res.completion - completion_tokens if self.refund_completion else 0
                self.tokens.credit(res.prompt - prompt_tokens + unused_out)
                self.input.credit(res.prompt - prompt_tokens)
                self.output.credit(unused_out)
        elif outcome == Outcome.RATE_LIMITED and res is not None:
            # The server rejected it before debiting: give the tokens back, but pause everyone.
            self.stats.rate_limited += 1
            self._move(1, res.prompt, res.completion)
            pause = retry_after if retry_after is not None else 1.0
            self.cooldown_until = max(self.cooldown_until, now + pause)
            self.stats.cooldown_s += pause
        elif outcome in (Outcome.CLIENT_ERROR, Outcome.CANCELLED) and res is not None:
            self._move(1, res.prompt, res.completion)
        elif outcome in UNKNOWN_OUTCOMES and res is not None:
            # Timeouts, drops, dead workers: the server may have generated (and billed) it. The limiter
            # keeps the debit; spend counts it by policy.
            cost = unknown_cost(self.unknown_outcome, res.cost, res.prompt * self.price_in)
        self.stats.spent_usd += cost
        if self.ledger is not None and res is not None:
            if outcome == Outcome.OK:  # "received" once its rows are on disk: held until the driver says so
                self.settle_seq += 1
                # until then the ledger counts it as unknown: the cap must too
                margin = max(0.0, unknown_cost(self.unknown_outcome, res.cost, res.prompt * self.price_in) - cost)
                self.held_margin += margin
                self.held_ok.append((self.settle_seq, margin, OutcomeEvent(self.attempt_id(rid), outcome, prompt_tokens,
                                                                           completion_tokens, cost)))
            else:
                self.ledger.add(OutcomeEvent(self.attempt_id(rid), outcome))
        if headers and res is not None:
            self.observe_headers(headers, res, now)
        return cost

    def _move(self, requests: float, prompt: float, completion: float) -> None:
        """The one place buckets are debited (negative) or credited (positive) for a whole reservation."""
        for bucket, amount in ((self.requests, requests), (self.tokens, prompt + completion),
                               (self.input, prompt), (self.output, completion)):
            bucket.credit(amount) if amount > 0 else bucket.debit(-amount)

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
            if reason == StopReason.SPEND_CAP:
                self.stats.cap_hit = True

    def max_tokens_for(self, sentences: int, ceiling: int, margin: float = 1.15) -> int:
        return size_max_tokens(self.lengths.per_sentence(), sentences, ceiling, margin)

    def snapshot(self) -> BudgetSnapshot:
        s = self.stats
        return BudgetSnapshot(
            **{**asdict(s), "cooldown_s": round(s.cooldown_s, 3), "wait_by_limit": dict(s.wait_by_limit)},
            inflight=len(self.inflight), spent_total_usd=self.spent(), per_sentence=self.lengths.per_sentence(),
            limits={"rpm": self.requests.limit, "tpm": self.tokens.limit}, settle_seq=self.settle_seq,
        )


class BudgetActor:
    """The run's single budget, as a Ray actor (created in :mod:`skillgen.run`), writing the ledger.

    Every grant's ``sent`` event is on disk before :meth:`exchange` returns it, so a kill of anything at
    any moment leaves the ledger knowing every request that may have been sent.
    """

    def __init__(self, ledger: LedgerWriter | None = None, **kwargs: Any):
        self.ledger = ledger  # from RunDir.ledger_writer(): the driver holds the run dir's lease
        self.budget = Budget(ledger=self.ledger, **kwargs)

    def _flush(self, must: bool) -> bool:
        if self.ledger is None or not (must or time.monotonic() - self.ledger.last_flush > 1.0):
            return True
        try:
            self.ledger.flush()
            return True
        except OSError as exc:  # nothing may be sent that the ledger does not know about
            log.error("ledger write failed (%s): no request is sent that the ledger does not know", exc.strerror or exc)
            self.budget.stop(StopReason.LEDGER_WRITE_FAILED)
            return False

    def exchange(self, worker: str, settles: list[Settlement], items: list[ReserveItem]) -> ExchangeReply:
        """One round trip per worker tick: settle finished requests, then reserve for waiting ones."""
        b = self.budget
        costs = [b.settle(s.rid, prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens,
                          sentences_requested=s.sentences_requested, headers=s.headers, status=s.status,
                          retry_after=s.retry_after, error_class=s.error_class) for s in settles]
        out = b.reserve(worker, items) if items else {"granted": [], "wait": 0.0}
        if not self._flush(must=bool(out["granted"])):
            for rid in out["granted"]:  # never handed out: undo them (their sent events stay buffered)
                b.settle(rid, status=None, error_class=Outcome.CANCELLED)
            out["granted"] = []
        return ExchangeReply(out["granted"], out["wait"], b.stopped, b.lengths.per_sentence(), costs)

    def pid(self) -> int:
        """The actor's process id (operators and chaos tests kill it with a signal)."""
        import os

        return os.getpid()

    def stop(self, reason: str) -> None:
        self.budget.stop(reason)

    def release_worker(self, worker: str) -> int:
        """Settle the reservations of a dead worker: sent or not, we cannot know, so ``worker_lost``."""
        dead = [rid for rid, r in self.budget.inflight.items() if r.worker == worker]
        for rid in dead:
            self.budget.settle(rid, status=None, error_class=Outcome.WORKER_LOST)
        self._flush(must=True)
        return len(dead)

    def end_worker(self, worker: str) -> int:
        """A worker that finished normally settled everything it sent; what is left was granted but never
        reached it (its exchange call was cut short): cancelled before send."""
        left = [rid for rid, r in self.budget.inflight.items() if r.worker == worker]
        for rid in left:
            self.budget.settle(rid, status=None, error_class=Outcome.CANCELLED)
        self._flush(must=True)
        return len(left)

    def snapshot(self) -> BudgetSnapshot:
        """The budget's state; ``settle_seq`` is the mark the driver passes to :meth:`persisted`."""
        self._flush(must=False)
        return self.budget.snapshot()

    def persisted(self, upto_seq: int) -> int:
        released = self.budget.persisted(upto_seq)
        self._flush(must=bool(released))
        return released

    def close(self) -> BudgetSnapshot:
        self._flush(must=True)
        return self.budget.snapshot()
