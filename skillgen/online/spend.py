"""The spend guard: the run dir's spend cap, by the ledger, at the worst case of what may have been paid for.

A request is granted only if the run dir's spend so far (by the ledger, before
this invocation), plus what this invocation settled, plus the worst case
(prompt + ``max_tokens`` at the model's price) of every request in flight,
plus the margin of answers not yet on disk, stays under the cap. Every grant
is a ``sent`` event in the ledger (:mod:`skillgen.rundir.ledger`) *before* it
is handed out, and every settlement an outcome, priced as the ledger prices
it: usage for 200s, $0 for rejections, and for unknown outcomes (timeout, lost
connection, dead worker) the :data:`~skillgen.rundir.ledger.UnknownPolicy` --
the worst case by default, so the cap holds whatever is killed when.

A 200 is written as received only once the driver has its rows on disk
(:meth:`SpendGuard.persisted`); until then the ledger would count it as
unknown, and so does the cap (its margin over the actual cost stays held).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from skillgen.llm.pricing import Price
from skillgen.rundir.ledger import (UNKNOWN_OUTCOMES, LedgerWriter, Outcome, OutcomeEvent, SentEvent, UnknownPolicy,
                                    unknown_cost)

__all__ = ["Attempt", "SpendGuard"]


@dataclass(frozen=True)
class Attempt:
    """One granted request as the ledger knows it."""

    attempt_id: str
    request_key: str
    attempt: int
    worker: str
    prompt: int  # estimated prompt tokens
    completion: int  # max_tokens


class SpendGuard:
    """Ledger-backed spend cap (``cap`` None: no cap, the ledger is still written)."""

    def __init__(self, price: Price, *, cap: float | None = None, spent_before: float = 0.0,
                 policy: UnknownPolicy = "worst_case", ledger: LedgerWriter | None = None):
        unknown_cost(policy, 0.0, 0.0)  # ValueError now, not at the first timeout
        self.price, self.cap, self.spent_before, self.policy, self.ledger = price, cap, spent_before, policy, ledger
        self.settled_usd = 0.0  # this invocation, as the ledger prices it
        self.inflight_usd = 0.0  # worst cases of the requests in flight
        self.prompt_tokens = 0  # reported by 200s
        self.completion_tokens = 0
        self.settle_seq = 0
        self.held: list[tuple[int, float, OutcomeEvent]] = []  # 200s whose rows are not yet on disk
        self.held_margin = 0.0  # their worst case minus their cost: still counted against the cap
        self.instance = uuid.uuid4().hex[:12]  # attempt ids stay unique across runs and restarts

    def attempt_id(self, rid: int) -> str:
        return f"{self.instance}-{rid}"

    def worst_case(self, prompt: int, completion: int) -> float:
        return self.price.cost(prompt, completion)

    def spent(self) -> float:
        """The run dir's spend: before this invocation plus what it settled."""
        return self.spent_before + self.settled_usd

    def admits(self, worst: float) -> bool:
        """Whether one more request of this worst case stays under the cap, were everything to stop now."""
        return self.cap is None or self.spent() + self.inflight_usd + self.held_margin + worst <= self.cap + 1e-12

    @property
    def holding(self) -> bool:
        """Answers are waiting for their rows to reach the disk (their cost may still come down)."""
        return bool(self.held)

    def sent(self, a: Attempt) -> float:
        """Record a grant in the ledger (before it is handed out); returns its worst case."""
        worst = self.worst_case(a.prompt, a.completion)
        if self.ledger is not None:
            self.ledger.add(SentEvent(a.attempt_id, a.request_key, a.attempt, a.worker, a.prompt, a.completion, worst,
                                      self.price.cost(a.prompt, 0)))
        self.inflight_usd += worst
        return worst

    def settled(self, a: Attempt, outcome: Outcome, prompt_tokens: int | None = None,
                completion_tokens: int | None = None) -> float:
        """The outcome of a granted attempt; returns what it counts as costing (USD)."""
        worst = self.worst_case(a.prompt, a.completion)
        self.inflight_usd = max(0.0, self.inflight_usd - worst)
        unknown = unknown_cost(self.policy, worst, self.price.cost(a.prompt, 0))
        cost = 0.0
        if outcome == Outcome.OK:
            cost = self.price.cost(prompt_tokens or 0, completion_tokens or 0)
            self.prompt_tokens += prompt_tokens or 0
            self.completion_tokens += completion_tokens or 0
        elif outcome in UNKNOWN_OUTCOMES:
            cost = unknown  # the server may have generated (and billed) it
        self.settled_usd += cost
        if self.ledger is None:
            return cost
        if outcome == Outcome.OK:  # "received" once its rows are on disk; until then unknown, for the cap too
            self.settle_seq += 1
            margin = max(0.0, unknown - cost)
            self.held_margin += margin
            self.held.append((self.settle_seq, margin, OutcomeEvent(a.attempt_id, outcome, prompt_tokens,
                                                                    completion_tokens, cost)))
        else:
            self.ledger.add(OutcomeEvent(a.attempt_id, outcome))
        return cost

    def persisted(self, upto_seq: int) -> int:
        """The driver wrote the rows of every 200 settled up to ``upto_seq``: their outcomes go to the ledger.

        Why wait: the ledger must never say an answer was received while its rows could still be lost. If
        the run dies first, the attempt stays ``unknown`` (counted at its worst case) and a rerun redoes it.
        Returns how many outcomes were released."""
        keep = []
        for seq, margin, event in self.held:
            if seq <= upto_seq:
                self.ledger.add(event)
                self.held_margin = max(0.0, self.held_margin - margin)
            else:
                keep.append((seq, margin, event))
        released = len(self.held) - len(keep)
        self.held = keep
        return released
