"""The request ledger: one row per attempt sent, the only source of what a run dir spent.

Why a ledger: rows and failure records only know what *arrived*. Money also
goes to requests that time out, lose their connection or die with their
worker, and providers bill those too. So every attempt is written down twice,
in write-once Parquet part files under ``<run_dir>/ledger/`` (the same atomic
write as the shards, never edited):

1. a ``sent`` event, written *before* the reservation is handed to the worker
   (so a kill at any moment leaves a trace of every request that may have
   gone out), carrying its worst case: prompt + ``max_tokens`` at list price;
2. an ``outcome`` event once its fate is known: ``200`` with the usage the
   server reported (written only once the driver has the answer's rows on
   disk, so "received" always means "kept"), ``4xx``/``429``/``5xx``
   (rejected, not billed),
   ``timeout``/``connection_lost``/``worker_lost`` (unknown: the server may
   have generated and billed it), or ``cancelled_before_send``.

:func:`read_ledger` folds the events into one row per attempt; an attempt with
no outcome (its process died) counts as ``unknown``. :func:`ledger_totals`
prices the run dir: known cost plus, for unknown outcomes, the policy chosen
in ``unknown_outcome`` -- ``worst_case`` (default; with it the spend cap holds
whatever is killed when), ``prompt_only`` or ``free``.

Batch mode writes the same two events per line: ``sent`` (worker ``batch``,
its worst case at the batch price) before the batch is created, and an
outcome once the batch is collected: ``200`` with the line's usage, the HTTP
class of a per-line error, or ``expired`` / ``batch_cancelled`` /
``batch_failed`` for lines the batch ended without processing (not billed).
Until then the line is ``pending``: held at its worst case whatever the
policy, so the spend cap holds while batches run at the provider.

Writers: only the budget actor (online) or the batch driver of the run holding the run dir lease. Readers:
:func:`read_ledger` / :func:`ledger_totals` (the driver's spend cap, the run
summary, ``skillgen status``). Both only list, read and create whole files,
so the ledger moves to object storage with :mod:`skillgen.common.atomic`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from enum import StrEnum
from typing import Any, Literal

import polars as pl

from skillgen.common.storage import resolve

__all__ = ["BATCH_WORKER", "LEDGER_DIR", "LedgerTotals", "LedgerWriter", "Outcome", "OutcomeEvent", "SCHEMA",
           "SentEvent", "UNKNOWN_OUTCOMES", "UnknownPolicy", "ledger_totals", "outcome_class", "read_events",
           "read_ledger", "unknown_cost"]

LEDGER_DIR = "ledger"
UnknownPolicy = Literal["worst_case", "prompt_only", "free"]  # GenerationConfig.unknown_outcome

class Outcome(StrEnum):
    """What became of one attempt. Stored as its value (a string) in the ledger's Parquet parts."""

    OK = "200"
    CLIENT_ERROR = "4xx"  # rejected: not billed
    RATE_LIMITED = "429"
    SERVER_ERROR = "5xx"
    TIMEOUT = "timeout"  # unknown: the server may have generated and billed it
    CONNECTION_LOST = "connection_lost"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled_before_send"
    UNKNOWN = "unknown"  # a sent event without an outcome: the process that knew died
    # batch mode: a line of a batch still open (held at worst case whatever the policy), and the lines a
    # batch ended without processing (the provider bills only processed lines)
    PENDING = "pending"
    EXPIRED = "expired"
    BATCH_CANCELLED = "batch_cancelled"
    BATCH_FAILED = "batch_failed"


UNKNOWN_OUTCOMES = frozenset({Outcome.TIMEOUT, Outcome.CONNECTION_LOST, Outcome.WORKER_LOST, Outcome.UNKNOWN})
BATCH_WORKER = "batch"  # the ``worker`` of every attempt batch mode sends


SCHEMA: dict[str, Any] = {
    "attempt_id": pl.String,
    "event": pl.String,  # "sent" | "outcome"
    "t": pl.Float64,  # epoch seconds of the event
    "request_key": pl.String,
    "attempt": pl.Int32,
    "worker": pl.String,
    "outcome": pl.String,
    "prompt_tokens": pl.Int64,  # reported usage (200 only)
    "completion_tokens": pl.Int64,
    "cost_usd": pl.Float64,  # known cost (200 only)
    "worst_prompt_tokens": pl.Int64,  # what was reserved: estimated prompt + max_tokens
    "worst_completion_tokens": pl.Int64,
    "worst_cost_usd": pl.Float64,
    "prompt_only_cost_usd": pl.Float64,
}


def outcome_class(status: int | None, error_class: str | None) -> Outcome:
    """The ledger's outcome for an HTTP status / client error class (see :mod:`skillgen.llm.client`)."""
    if status == 200:
        return Outcome.OK
    if status == 429:
        return Outcome.RATE_LIMITED
    if status is not None and 500 <= status < 600:
        return Outcome.TIMEOUT if status == 504 else Outcome.SERVER_ERROR  # a gateway timeout may have been generated
    if status is not None and 400 <= status < 500:
        return Outcome.CLIENT_ERROR
    if error_class == "timeout":
        return Outcome.TIMEOUT
    if error_class == Outcome.CANCELLED:
        return Outcome.CANCELLED
    return Outcome.CONNECTION_LOST


@dataclass(frozen=True)
class SentEvent:
    attempt_id: str
    request_key: str
    attempt: int
    worker: str
    worst_prompt_tokens: int
    worst_completion_tokens: int
    worst_cost_usd: float
    prompt_only_cost_usd: float
    t: float = field(default_factory=time.time)

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "event": "sent"}


@dataclass(frozen=True)
class OutcomeEvent:
    attempt_id: str
    outcome: Outcome
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    t: float = field(default_factory=time.time)

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": Outcome(self.outcome).value, "event": "outcome"}


class LedgerWriter:
    """Buffers events; :meth:`flush` writes them as one write-once part file."""

    def __init__(self, run_dir: str | Path):
        self.folder = resolve(run_dir) / LEDGER_DIR
        self.buffer: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.parts = 0

    def add(self, event: SentEvent | OutcomeEvent) -> None:
        self.buffer.append(event.row())

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        frame = pl.DataFrame(self.buffer, schema=SCHEMA)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        (self.folder / name).write_parquet(frame)  # write-once part: atomic on disk and on object stores
        self.buffer = []  # only once written: a failed write keeps the events for the next try
        self.parts += 1


def read_events(run_dir: str | Path) -> pl.DataFrame:
    from skillgen.rundir.sinks import read_parts

    return read_parts(resolve(run_dir) / LEDGER_DIR, SCHEMA, advice=(
        "the ledger is what the run dir spent: restore the file from a backup (deleting it forgets that spend)"))


def read_ledger(run_dir: str | Path) -> pl.DataFrame:
    """One row per attempt: its sent event joined with its last outcome (``unknown`` if none)."""
    events = read_events(run_dir)
    sent = events.filter(pl.col("event") == "sent").drop("outcome", "prompt_tokens", "completion_tokens", "cost_usd", "event")
    outcomes = (events.filter(pl.col("event") == "outcome").sort("t")
                .unique("attempt_id", keep="last", maintain_order=True)
                .select("attempt_id", "outcome", "prompt_tokens", "completion_tokens", "cost_usd", pl.col("t").alias("t_done")))
    # no outcome: its process died (unknown), or, for batch mode, its batch is still open (pending)
    none = pl.when(pl.col("worker") == BATCH_WORKER).then(pl.lit(Outcome.PENDING.value)).otherwise(pl.lit(Outcome.UNKNOWN.value))
    return (sent.unique("attempt_id", keep="first").join(outcomes, on="attempt_id", how="left")
            .with_columns(pl.col("outcome").fill_null(none)).sort("t"))


@dataclass
class LedgerTotals:
    """What a run dir spent, by the ledger. ``spent_usd`` = known + unknown (priced by ``policy``)."""

    policy: UnknownPolicy
    attempts: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0  # reported by 200 responses
    completion_tokens: int = 0
    known_usd: float = 0.0
    unknown_attempts: int = 0
    unknown_usd: float = 0.0  # priced by policy
    unknown_worst_tokens: int = 0
    pending_attempts: int = 0  # batch lines whose batch is open: worst case, whatever the policy
    pending_usd: float = 0.0

    @property
    def spent_usd(self) -> float:
        return self.known_usd + self.unknown_usd + self.pending_usd

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spent_usd": self.spent_usd}


def unknown_cost(policy: UnknownPolicy, worst_cost: float, prompt_only_cost: float) -> float:
    """What an attempt of unknown outcome is counted as costing."""
    if policy == "worst_case":
        return worst_cost
    if policy == "prompt_only":
        return prompt_only_cost
    if policy == "free":
        return 0.0
    raise ValueError(f"unknown_outcome must be worst_case, prompt_only or free, not {policy!r}")


def ledger_totals(run_dir: str | Path, policy: UnknownPolicy = "worst_case") -> LedgerTotals:
    frame = read_ledger(run_dir)
    totals = LedgerTotals(policy=policy, attempts=frame.height)
    if not frame.height:
        return totals
    totals.by_outcome = {k: int(v) for k, v in frame.group_by("outcome").len().iter_rows()}
    ok = frame.filter(pl.col("outcome") == Outcome.OK.value)
    totals.prompt_tokens = int(ok["prompt_tokens"].sum() or 0)
    totals.completion_tokens = int(ok["completion_tokens"].sum() or 0)
    totals.known_usd = float(ok["cost_usd"].sum() or 0.0)
    unknown = frame.filter(pl.col("outcome").is_in(sorted(o.value for o in UNKNOWN_OUTCOMES)))
    totals.unknown_attempts = unknown.height
    totals.unknown_worst_tokens = int((unknown["worst_prompt_tokens"] + unknown["worst_completion_tokens"]).sum() or 0)
    totals.unknown_usd = sum(unknown_cost(policy, w, p) for w, p in
                             unknown.select("worst_cost_usd", "prompt_only_cost_usd").iter_rows())
    pending = frame.filter(pl.col("outcome") == Outcome.PENDING.value)
    totals.pending_attempts = pending.height
    totals.pending_usd = float(pending["worst_cost_usd"].sum() or 0.0)
    return totals
