"""The run's budget as a Ray actor: a thin shell over :class:`~skillgen.online.budget.Budget` that flushes
the ledger.

One per run, started by :mod:`skillgen.online.driver` on the driver's node (it writes the ledger into
the run dir, whose lease the driver holds). Every grant's ``sent`` event is on disk before
:meth:`BudgetActor.exchange` returns it, so a kill of anything at any moment leaves the ledger knowing
every request that may have been sent; if the ledger cannot be written, nothing more is granted.
"""

from __future__ import annotations

import logging
import os
import time

from skillgen.online.budget import Budget
from skillgen.online.messages import BudgetSnapshot, ExchangeReply, ReserveItem, Settlement
from skillgen.rundir.ledger import Outcome
from skillgen.summary import StopReason

__all__ = ["BudgetActor"]

log = logging.getLogger(__name__)


class BudgetActor:
    """Forwards to its :class:`Budget`; flushes the ledger before a grant leaves and at least every second."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.ledger = budget.guard.ledger  # from RunDir.ledger_writer(): the driver holds the run dir's lease

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
        costs = [b.settle(s) for s in settles]
        reply = b.reserve(worker, items) if items else ExchangeReply([], 0.0, b.stopped, None)
        granted = reply.granted
        if not self._flush(must=bool(granted)):
            for rid in granted:  # never handed out: undo them (their sent events stay buffered)
                b.settle(Settlement(rid, error_class=Outcome.CANCELLED))
            granted = []
        return ExchangeReply(granted, reply.wait, b.stopped, b.lengths.per_sentence(), costs)

    def pid(self) -> int:  # operators and chaos tests kill the actor with a signal
        return os.getpid()

    def stop(self, reason: str) -> None:
        self.budget.stop(reason)

    def release_worker(self, worker: str) -> int:
        """Settle the reservations of a dead worker: sent or not, we cannot know, so ``worker_lost``."""
        return self._release(worker, Outcome.WORKER_LOST)

    def end_worker(self, worker: str) -> int:
        """A worker that finished normally settled everything it sent; what is left was granted but never
        reached it (its exchange call was cut short): cancelled before send."""
        return self._release(worker, Outcome.CANCELLED)

    def _release(self, worker: str, error_class: str) -> int:
        released = self.budget.release(worker, error_class)
        self._flush(must=True)
        return released

    def snapshot(self) -> BudgetSnapshot:
        """The budget's state; ``settle_seq`` is the mark the driver passes to :meth:`persisted`."""
        self._flush(must=False)
        return self.budget.snapshot()

    def persisted(self, upto_seq: int) -> int:
        released = self.budget.guard.persisted(upto_seq)
        self._flush(must=bool(released))
        return released

    def close(self) -> BudgetSnapshot:
        self._flush(must=True)
        return self.budget.snapshot()
