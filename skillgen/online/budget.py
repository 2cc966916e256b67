"""The run's one budget: every worker's requests pass here, because provider limits are per API key.

:class:`Budget` composes three parts, each a module with its own tests: the rate limiter
(:mod:`.limiter`: RPM/TPM buckets, header learning, ``Retry-After``), the spend guard (:mod:`.spend`:
the cap at the worst case, writing the ledger) and the completion-length model (:mod:`.lengths`). A
request is granted when the guard admits its worst case and the limiter has room; it is in the ledger
before it is handed out. Once the cap would be crossed nothing new is granted, in-flight requests
finish, and the run stops cleanly. :class:`~skillgen.online.budget_actor.BudgetActor` is the Ray actor
around it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from skillgen.config import GenerationConfig
from skillgen.llm.pricing import Price
from skillgen.online.lengths import LengthModel
from skillgen.online.limiter import RateLimiter, RateLimits
from skillgen.online.messages import BudgetSnapshot, ExchangeReply, ReserveItem, Settlement
from skillgen.online.spend import Attempt, SpendGuard
from skillgen.rundir.ledger import LedgerWriter, Outcome, outcome_class
from skillgen.summary import StopReason

__all__ = ["Budget", "Reservation"]


@dataclass(frozen=True)
class Reservation:
    attempt: Attempt
    t: float  # when granted
    mark: float  # the limiter's tokens taken, this one included (corrects what its response headers say)


class Budget:
    """Grants and settles requests against the three parts; plain and clock-injectable (tested without Ray)."""

    def __init__(self, guard: SpendGuard, limiter: RateLimiter | None = None, lengths: LengthModel | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.guard = guard
        self.limiter = limiter or RateLimiter(now=clock())
        self.lengths = lengths or LengthModel()
        self.inflight: dict[int, Reservation] = {}
        self.next_id = 1
        self.stopped: str | None = None
        self.granted, self.settled, self.reserved_tokens, self.cap_hit = 0, 0, 0.0, False

    @classmethod
    def for_run(cls, config: GenerationConfig, price: Price, spent_before: float, ledger: LedgerWriter) -> "Budget":
        limits = RateLimits(config.rpm, config.tpm, config.input_tpm, config.output_tpm)
        guard = SpendGuard(price, cap=config.spend_cap_usd, spent_before=spent_before, policy=config.unknown_outcome,
                           ledger=ledger)
        return cls(guard, RateLimiter(limits), LengthModel(config.max_tokens_quantile))  # buckets start full

    def reserve(self, worker: str, items: list[ReserveItem | tuple[int, int]]) -> ExchangeReply:
        """Grant a prefix of ``items`` (:class:`ReserveItem` or (prompt, max_tokens)); say how long to wait for the rest."""
        now = self.clock()
        self.limiter.refill(now)
        cooldown = 0.0 if self.stopped else self.limiter.cooldown(now)
        if self.stopped or cooldown:
            return ExchangeReply([], cooldown, self.stopped, self.lengths.per_sentence())
        granted: list[int] = []
        wait = 0.0
        for item in items:
            item = item if isinstance(item, ReserveItem) else ReserveItem(*item)
            if not self.guard.admits(self.guard.worst_case(item.prompt_tokens, item.max_tokens)):
                if not self.inflight and not granted and not self.guard.holding:
                    self.stop(StopReason.SPEND_CAP)
                else:
                    self.cap_hit = True
                    wait = 0.25  # in-flight requests may settle cheaper than their worst case
                break
            wait = self.limiter.wait_for(item.prompt_tokens, item.max_tokens)
            if wait > 0:
                break
            granted.append(self._grant(worker, item, now))
        return ExchangeReply(granted, wait, self.stopped, self.lengths.per_sentence())

    def _grant(self, worker: str, item: ReserveItem, now: float) -> int:
        rid, self.next_id = self.next_id, self.next_id + 1
        attempt = Attempt(self.guard.attempt_id(rid), item.request_key, item.attempt, worker, item.prompt_tokens,
                          item.max_tokens)
        mark = self.limiter.take(item.prompt_tokens, item.max_tokens)
        self.guard.sent(attempt)
        self.inflight[rid] = Reservation(attempt, now, mark)
        self.granted += 1
        self.reserved_tokens += item.prompt_tokens + item.max_tokens
        return rid

    def settle(self, s: Settlement) -> float:
        """Reconcile a reservation with what happened; returns what the attempt is counted as costing (USD)."""
        now = self.clock()
        self.limiter.refill(now)
        res = self.inflight.pop(s.rid, None)
        self.settled += 1
        if res is None:
            return 0.0
        status, error_class = s.status, s.error_class
        if status == 200 and s.prompt_tokens is None:
            status, error_class = None, "bad_response"  # a 200 without usage: we cannot know what it cost
        outcome = outcome_class(status, error_class)
        a = res.attempt
        if outcome == Outcome.OK:
            self.lengths.add(s.completion_tokens or 0, s.sentences_requested)
            self.limiter.reconcile(a.prompt, a.completion, s.prompt_tokens, s.completion_tokens or 0)
        elif outcome == Outcome.RATE_LIMITED:  # rejected before debiting: tokens back, but everyone pauses
            self.limiter.give_back(a.prompt, a.completion)
            self.limiter.pause(s.retry_after, now)
        elif outcome in (Outcome.CLIENT_ERROR, Outcome.CANCELLED):
            self.limiter.give_back(a.prompt, a.completion)
        # unknown outcomes (timeouts, drops, dead workers): the server may have billed it; the debit stays
        cost = self.guard.settled(a, outcome, s.prompt_tokens, s.completion_tokens or 0)
        if s.headers:
            later = sum(1 for rid in self.inflight if rid > s.rid)
            self.limiter.observe(s.headers, res.t, res.mark, later, now)
        return cost

    def release(self, worker: str, error_class: str) -> int:
        """Settle every reservation ``worker`` still holds as ``error_class``; returns how many."""
        rids = [rid for rid, r in self.inflight.items() if r.attempt.worker == worker]
        for rid in rids:
            self.settle(Settlement(rid, error_class=error_class))
        return len(rids)

    def stop(self, reason: str) -> None:
        if not self.stopped:
            self.stopped = reason
            self.cap_hit = self.cap_hit or reason == StopReason.SPEND_CAP

    def snapshot(self) -> BudgetSnapshot:
        g, lim = self.guard, self.limiter
        return BudgetSnapshot(
            self.granted, self.settled, lim.stats.rate_limited, lim.stats.header_tightenings,
            round(lim.stats.cooldown_s, 3), self.reserved_tokens, g.prompt_tokens, g.completion_tokens, g.settled_usd,
            self.cap_hit, self.stopped, dict(lim.stats.wait_by_limit), len(self.inflight), g.spent(),
            self.lengths.per_sentence(), {"rpm": lim.requests.limit, "tpm": lim.tokens.limit}, g.settle_seq)
