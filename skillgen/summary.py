"""What one invocation of a generation run did: one typed summary for online and batch mode.

Both drivers end the same way (:func:`close_invocation`): they hand over what
they counted (a :class:`Tally`) and why they stopped, if they did; the run dir
supplies what was spent (by the ledger), the plan what was asked for. The
result is a :class:`RunSummary`, recorded in ``run.json``'s history, logged as
one line and returned to ``skillgen run``, the pipeline and the API.

Why a state enum and a separate stop reason instead of ``"stopped: <reason>"``
strings: a caller branches on the state (exit code 3 for anything but
``complete``) and reads the reason; a typo in either is an ``AttributeError``,
not a silently different string. :attr:`RunSummary.status` keeps the one-word
view (``"stopped: spend cap"``) for people and for older readers of run.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from skillgen.plan import RunPlan
from skillgen.rundir.ledger import LedgerTotals
from skillgen.rundir.rundir import RunDir
from skillgen.rundir.sinks import utcnow

__all__ = ["RequestCounters", "RunState", "RunSummary", "StopReason", "Tally", "close_invocation"]

log = logging.getLogger("skillgen.summary")


class StopReason(StrEnum):
    """Why a run stopped before its work list was done. (An endpoint that refuses the account -- no quota, bad
    key -- stops a run too; its stop reason is then the endpoint's ``"<error class>: <message>"``.)"""

    SPEND_CAP = "spend cap"
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM
    LEASE_LOST = "run dir lease lost"
    BUDGET_LOST = "budget actor lost"
    SCHEDULER_LOST = "scheduler actor lost"
    LEDGER_WRITE_FAILED = "ledger write failed"
    CANCELLED = "cancelled"  # skillgen batch cancel


class RunState(StrEnum):
    """How an invocation ended. Anything but ``COMPLETE`` exits 3: rerun the same command to continue."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"  # the driver ran out of work but skills are still missing (e.g. batch_shortfall)
    STOPPED = "stopped"  # see RunSummary.stop_reason
    INTERRUPTED = "interrupted"

    @classmethod
    def of(cls, stop_reason: str | None, remaining: int) -> "RunState":
        if stop_reason == StopReason.INTERRUPTED:
            return cls.INTERRUPTED
        if stop_reason:
            return cls.STOPPED
        return cls.INCOMPLETE if remaining else cls.COMPLETE


@dataclass
class RequestCounters:
    """What requests did: one online worker's counters, the scheduler's sum of them, or batch mode's collected
    lines (which know no retries, 429s or invalid answers: those stay 0)."""

    requests: int = 0
    ok: int = 0
    retries: int = 0
    rate_limited: int = 0
    errors: int = 0
    truncated: int = 0
    invalid: int = 0  # responses that left a skill short of valid sentences
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    sentences: int = 0

    def add(self, other: "RequestCounters") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @classmethod
    def total(cls, parts: "list[RequestCounters]") -> "RequestCounters":
        out = cls()
        for part in parts:
            out.add(part)
        return out


@dataclass(frozen=True)
class Tally:
    """What one invocation's driver did: skills it finished or gave up on, what it wrote, its requests."""

    completed: int
    failed: int
    rows_written: int
    failures_written: int
    counters: RequestCounters
    workers: int = 0  # online worker actors (0 in batch mode)


@dataclass
class RunSummary:
    """One invocation, as ``skillgen run --json`` prints it and run.json's history keeps it (flat keys)."""

    run_dir: str
    mode: str  # "online" | "batch"
    state: RunState
    stop_reason: str | None  # a StopReason, or the endpoint's "<error class>: <message>"
    skills_selected: int
    skills_already_done: int
    skills_attempted: int
    skills_completed: int
    skills_failed: int
    skills_remaining: int
    rows_written: int
    failures_written: int
    requests: int
    retries: int
    rate_limited: int
    truncated: int
    prompt_tokens: int
    completion_tokens: int
    estimated_cost_usd: float  # upper bound before the run: exact prompts + max_tokens per request
    actual_cost_usd: float  # this invocation, by the ledger (unknown outcomes priced by unknown_outcome)
    total_cost_usd: float  # everything this run dir has paid for, by the ledger
    estimated_prompt_tokens: int
    elapsed_s: float
    workers: int
    ledger: LedgerTotals  # the run dir's ledger after this invocation
    budget: dict[str, Any] = field(default_factory=dict)  # the driver's own snapshot (asdict of a dataclass)

    @property
    def status(self) -> str:
        """``complete``, ``incomplete``, ``interrupted`` or ``stopped: <reason>``."""
        return f"{self.state}: {self.stop_reason}" if self.state == RunState.STOPPED else str(self.state)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(state=str(self.state), status=self.status, ledger=self.ledger.to_dict())
        return out

    def format(self) -> str:
        return (
            f"{self.status}: {self.skills_completed} skills completed, {self.skills_failed} failed, "
            f"{self.skills_remaining} remaining ({self.skills_already_done} were done before) | "
            f"{self.rows_written} rows, {self.failures_written} failure records written\n"  # two lines of < 300 characters
            f"  {self.requests} requests, {self.retries} retries, {self.rate_limited} 429s, {self.truncated} truncated | "
            f"tokens {self.prompt_tokens} prompt (estimated {self.estimated_prompt_tokens}) + {self.completion_tokens} completion | "
            f"cost ${self.actual_cost_usd:.4f} (estimate up to ${self.estimated_cost_usd:.4f}; run dir total ${self.total_cost_usd:.4f}) | "
            f"{self.elapsed_s:.1f} s"
        )


def close_invocation(run_dir: RunDir, plan: RunPlan, tally: Tally, *, mode: str, stop_reason: str | None,
                     budget: dict[str, Any] | None = None) -> RunSummary:
    """The summary of this invocation, recorded in run.json's history and logged: the one way a driver ends."""
    spend = run_dir.spend(plan.config.unknown_outcome)
    attempted = len(plan.tasks)
    remaining = attempted - tally.completed - tally.failed
    c = tally.counters
    summary = RunSummary(
        run_dir=str(run_dir), mode=mode, state=RunState.of(stop_reason, remaining),
        stop_reason=str(stop_reason) if stop_reason else None, skills_selected=len(plan.skills),
        skills_already_done=plan.already, skills_attempted=attempted, skills_completed=tally.completed,
        skills_failed=tally.failed, skills_remaining=remaining, rows_written=tally.rows_written,
        failures_written=tally.failures_written, requests=c.requests, retries=c.retries, rate_limited=c.rate_limited,
        truncated=c.truncated, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
        estimated_cost_usd=plan.est_cost, actual_cost_usd=max(0.0, spend.total_usd - plan.spent_before),
        total_cost_usd=spend.total_usd, estimated_prompt_tokens=plan.prompt_est,
        elapsed_s=time.monotonic() - plan.t0, workers=tally.workers, ledger=spend.ledger, budget=budget or {},
    )
    record = {k: v for k, v in summary.to_dict().items() if k != "budget"}
    run_dir.record_invocation({"started_at": plan.started_at, "finished_at": utcnow().isoformat(), "mode": mode,
                               "summary": record})
    log.info("%s", summary.format())
    return summary
