"""Ray-free stand-ins for the online runtime's actors, for unit tests of its cores.

The cores (:class:`skillgen.online.scheduler.Scheduler`,
:class:`skillgen.online.workers.WorkerCore`) talk to each other through Ray
handles: ``handle.method.remote(...)`` returns something to await. :class:`Handle`
gives a plain object that calling convention, running the method at once on the
caller's event loop, so a core can be driven step by step in one process, with
a real :class:`Scheduler` behind it and :class:`FakeBudget` granting or stopping.
"""

from __future__ import annotations

import asyncio
from typing import Any

from skillgen.common.taxonomy import Skill
from skillgen.online.messages import ExchangeReply, ReserveItem, Settlement
from skillgen.plan import SkillTask
from skillgen.rundir.sinks import FailureRecord, Row, utcnow


class _Method:
    def __init__(self, target: Any, name: str, calls: list[tuple[str, tuple]]):
        self.fn = getattr(target, name)
        self.name = name
        self.calls = calls

    def remote(self, *args: Any, **kwargs: Any) -> asyncio.Future:
        """Run now; hand back a finished future (awaited, or dropped like a fire-and-forget Ray call)."""
        self.calls.append((self.name, args))
        future = asyncio.get_running_loop().create_future()
        try:
            future.set_result(self.fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - delivered to whoever awaits, like a Ray task error
            future.set_exception(exc)
            future.add_done_callback(lambda f: f.exception())  # dropped futures must not warn
        return future


class Handle:
    """``handle.method.remote(...)`` on a plain object; ``calls`` records (method, args) in order."""

    def __init__(self, target: Any):
        self._target = target
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str) -> _Method:
        return _Method(self._target, name, self.calls)


class FakeBudget:
    """Grants every reservation (ids 1, 2, ...) unless told to stop; keeps every settlement."""

    def __init__(self, stop_after_grants: int | None = None, reason: str = "spend cap reached"):
        self.granted = 0
        self.settled: list[Settlement] = []
        self.stop_after = stop_after_grants
        self.reason = reason
        self.stopped: str | None = None
        self.ended: list[str] = []

    def exchange(self, worker: str, settles: list[Settlement], items: list[ReserveItem]) -> ExchangeReply:
        self.settled.extend(settles)
        if self.stop_after is not None:
            items = items[: max(0, self.stop_after - self.granted)]
        ids = list(range(self.granted + 1, self.granted + 1 + len(items)))
        self.granted += len(ids)
        stop = self.stopped or (self.reason if self.stop_after is not None and self.granted >= self.stop_after else None)
        return ExchangeReply(granted=ids, wait=0.0, stop=stop, per_sentence=None)

    def stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason

    def end_worker(self, worker: str) -> None:
        self.ended.append(worker)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def task(i: int, n: int = 3, missing: tuple[int, ...] | None = None) -> SkillTask:
    """Skill ``i`` with all ``n`` sentences missing (or the given indices)."""
    skill = Skill(f"s{i}", f"operate forklift systems {i}", description=f"Drive forklift number {i} safely.")
    return SkillTask(f"k{i}", skill, tuple(range(n)) if missing is None else missing)


def row(key: str, idx: int, sentence: str | None = None) -> Row:
    """A generated row as a worker reports it."""
    return Row(skill_id=f"s-{key}", label=f"label {key}", sentence=sentence or f"sentence {idx} for {key}", sample_idx=idx,
               request_key=key, model="simulator", prompt_version="v1", prompt_tokens=50, completion_tokens=30,
               cost_usd=0.0, created_at=utcnow())


def failure(key: str, error_class: str = "validation") -> FailureRecord:
    return FailureRecord(skill_id=f"s-{key}", request_key=key, error_class=error_class, message="x", attempts=1,
                         created_at=utcnow(), label=f"label {key}", n_missing=1, cost_usd=0.0)


async def handle_with_exchange(worker: Any, client: Any, t: SkillTask, timeout: float = 60.0) -> None:
    """``handle`` one task with the budget exchange loop running beside it, as ``run`` does."""
    exchanger = asyncio.create_task(worker.exchange_loop())
    try:
        await asyncio.wait_for(worker.handle(client, t), timeout=timeout)
    finally:
        exchanger.cancel()
        await asyncio.gather(exchanger, return_exceptions=True)
    await worker._final_settle()
