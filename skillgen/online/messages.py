"""Messages between the driver, the scheduler, the budget and the workers, as typed dataclasses.

Why not dicts: every message crosses a Ray actor boundary (pickled), and a
dict mutated in place on one side and read by key on the other hides typos
and stale fields until a run is half paid for. These are plain frozen-or-
small dataclasses; rows and failure records are :class:`~skillgen.rundir.sinks.Row`
and :class:`~skillgen.rundir.sinks.FailureRecord`, next to the Parquet schemas they fill.

Flow, per worker tick::

    worker  --ReserveItem[] + Settlement[]-->  budget   --ExchangeReply-->   worker
    worker  --WorkerReport (+ chunk size)-->   scheduler --Chunk(SkillTask[])--> worker
    driver  --drain()-->                       scheduler --Drained-->          driver
    driver  --snapshot()-->                    budget   --BudgetSnapshot-->    driver
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skillgen.plan import SkillTask
from skillgen.rundir.sinks import FailureRecord, Row
from skillgen.summary import RequestCounters

__all__ = ["BudgetSnapshot", "Chunk", "Drained", "ExchangeReply", "ReserveItem", "SchedulerState", "Settlement", "SkillTask",
           "WorkerReport"]


@dataclass
class WorkerReport:
    """What a worker produced since its last report (worker -> scheduler)."""

    rows: list[Row] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # request keys given back unfinished (run stopping)
    stats: RequestCounters | None = None  # the worker's counters so far (the latest replaces the last)


@dataclass(frozen=True)
class Chunk:
    """Scheduler -> worker: up to k tasks; ``stop`` says the run is stopping."""

    tasks: list[SkillTask]
    stop: str | None
    queued: int


@dataclass(frozen=True)
class SchedulerState:
    """What the scheduler knows (scheduler -> driver, every tick). ``workers``: the workers' counters summed."""

    total: int = 0
    finished: int = 0
    failed: int = 0
    queued: int = 0
    leased: int = 0
    stopped: str | None = None
    duplicates_dropped: int = 0
    reassigned: int = 0
    sentences: int = 0
    workers: RequestCounters = field(default_factory=RequestCounters)


@dataclass(frozen=True)
class Drained:
    """Scheduler -> driver: accepted rows and failure records to write, and the scheduler's state."""

    rows: list[Row]
    failures: list[FailureRecord]
    state: SchedulerState


@dataclass(frozen=True)
class ReserveItem:
    """One attempt asking to be sent: its estimated prompt, its ``max_tokens``, and what it is (for the ledger)."""

    prompt_tokens: int
    max_tokens: int
    request_key: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class Settlement:
    """What happened to a granted attempt (worker -> budget)."""

    rid: int
    status: int | None = None  # HTTP status; None: no response (see error_class)
    error_class: str | None = None  # client error class ("timeout", "connection", ...) or ledger.CANCELLED
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    sentences_requested: int = 0
    headers: dict[str, str] | None = None
    retry_after: float | None = None


@dataclass
class BudgetSnapshot:
    """The budget's state (budget actor -> driver, every tick): its counters and what it holds now.
    ``settle_seq``: the mark the driver passes to ``BudgetActor.persisted`` once the rows drained after
    this snapshot are on disk."""

    granted: int = 0
    settled: int = 0
    rate_limited: int = 0
    header_tightenings: int = 0
    cooldown_s: float = 0.0
    reserved_tokens: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spent_usd: float = 0.0  # settled by this invocation
    cap_hit: bool = False
    stop_reason: str | None = None
    wait_by_limit: dict[str, int] = field(default_factory=dict)
    inflight: int = 0
    spent_total_usd: float = 0.0  # the run dir's: before this invocation plus what it settled
    per_sentence: float | None = None
    limits: dict[str, float | None] = field(default_factory=dict)
    settle_seq: int | None = None


@dataclass(frozen=True)
class ExchangeReply:
    """Budget -> worker, once per tick: reservations granted (a prefix of the items), wait or stop."""

    granted: list[int]
    wait: float
    stop: str | None
    per_sentence: float | None
    costs: list[float] = field(default_factory=list)
