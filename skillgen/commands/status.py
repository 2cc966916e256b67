"""``skillgen status RUN_DIR``: progress, cost and failures of a run dir, without Ray.

:func:`status` returns a :class:`RunDirStatus`; ``--json`` prints its :meth:`~RunDirStatus.to_dict`, the
terminal view is :meth:`~RunDirStatus.format`. Both read the same typed fields, so a renamed field fails
where it is used instead of printing ``None``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when used: every command module is imported to build `skillgen --help`
    from skillgen.rundir.ledger import LedgerTotals, UnknownPolicy
    from skillgen.rundir.rundir import RunDir

__all__ = ["BatchStatus", "LastRun", "Reconciliation", "RunDirStatus", "reconcile", "status"]

HELP = "summarise a run dir: skills done, sentences, cost, failures by class"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the --run-dir of a generation run")
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.add_argument("--failures", type=int, default=5, help="show up to this many failure messages")


@dataclass(frozen=True)
class Reconciliation:
    """Spend three ways, for both modes: the ledger (what was sent; open batch lines at worst case), the rows
    and failure records (what arrived and was kept), and the estimates made before each invocation."""

    spent_usd: float
    ledger: LedgerTotals
    rows_and_failures_usd: float
    not_in_rows_usd: float  # paid for but not (or no longer) in any row: retries, released skills, lost answers
    estimates_usd: float
    invocations: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ledger": self.ledger.to_dict()}

    def format(self) -> list[str]:
        led = self.ledger
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(led.by_outcome.items())) or "none"
        return [
            f"ledger       ${led.spent_usd:.4f} = known ${led.known_usd:.4f} + {led.unknown_attempts} unknown "
            f"outcomes ${led.unknown_usd:.4f} ({led.policy}) + {led.pending_attempts} batch lines open "
            f"${led.pending_usd:.4f} (worst case) | {led.attempts} attempts ({outcomes}) | "
            f"tokens {led.prompt_tokens} prompt + {led.completion_tokens} completion",
            f"reconcile    rows + failure records account for ${self.rows_and_failures_usd:.4f}; "
            f"known spend not in rows ${self.not_in_rows_usd:.4f}; estimates of {self.invocations} invocations "
            f"up to ${self.estimates_usd:.4f}",
        ]


@dataclass(frozen=True)
class OpenBatch:
    seq: int
    batch_id: str | None
    status: str
    request_counts: dict[str, int]


@dataclass(frozen=True)
class BatchStatus:
    """Batch mode: batches by status, the open ones, and the money they hold."""

    by_status: dict[str, int]
    open: list[OpenBatch]
    held_worst_case_usd: float
    unattributed_usd: float  # paid for answers without a valid sentence


@dataclass(frozen=True)
class LastRun:
    """The last invocation as run.json recorded it (older run dirs may lack a field: it reads as None)."""

    status: str | None = None
    skills_selected: int | None = None
    skills_completed: int | None = None
    requests: int | None = None
    retries: int | None = None
    rows_written: int | None = None
    estimated_cost_usd: float | None = None
    actual_cost_usd: float | None = None

    @classmethod
    def of(cls, record: dict[str, Any]) -> "LastRun":
        return cls(**{name: record.get(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class FailureExample:
    label: str
    error_class: str
    message: str


@dataclass(frozen=True)
class RunDirStatus:
    run_dir: str
    model: str
    prompt_version: str | None
    fingerprint: str | None
    sentences_per_skill: int
    skills_complete: int
    skills_partial: int
    skills_failed: int
    sentences: int
    duplicate_rows_on_disk: int
    prompt_tokens: int
    cost_usd: float  # by the ledger
    reconciliation: Reconciliation
    invocations: int
    last_run: LastRun | None = None
    batches: BatchStatus | None = None  # None: an online-only run dir
    failures_by_class: dict[str, int] = field(default_factory=dict)
    failure_examples: list[FailureExample] = field(default_factory=list)

    @property
    def skills_selected_last_run(self) -> int | None:
        return self.last_run.skills_selected if self.last_run else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciliation": self.reconciliation.to_dict(),
                "skills_selected_last_run": self.skills_selected_last_run}

    def format(self) -> str:
        sel = self.skills_selected_last_run
        lines = [
            f"run dir      {self.run_dir} (model {self.model}, prompt {self.prompt_version}, fingerprint {self.fingerprint})",
            f"skills       {self.skills_complete} complete, {self.skills_partial} partial, {self.skills_failed} failed"
            + (f" of {sel} selected in the last run" if sel is not None else ""),
            f"sentences    {self.sentences} ({self.sentences_per_skill} per skill)",
            f"cost         ${self.cost_usd:.4f} (by the ledger)",
            *self.reconciliation.format(),
        ]
        last = self.last_run
        if last:
            lines.append(f"last run     {last.status}: {last.requests} requests, {last.retries} retries, "
                         f"estimate up to ${last.estimated_cost_usd or 0:.4f}, actual ${last.actual_cost_usd or 0:.4f}")
        if self.batches:
            b = self.batches
            lines.append("batches      " + ", ".join(f"{k}: {v}" for k, v in sorted(b.by_status.items()))
                         + f" (open ones hold up to ${b.held_worst_case_usd:.4f}; ${b.unattributed_usd:.4f} "
                           "paid for answers without a valid sentence)")
            for o in b.open:
                counts = o.request_counts
                lines.append(f"  - batch {o.seq} {o.batch_id or '(not created yet)'}: {o.status}, "
                             f"{counts.get('completed', 0)}/{counts.get('total', 0)} done, {counts.get('failed', 0)} failed")
        if self.failures_by_class:
            lines.append("failures     " + ", ".join(f"{k}: {v}" for k, v in sorted(self.failures_by_class.items())))
            lines += [f"  - {ex.label}: {ex.error_class}: {ex.message}" for ex in self.failure_examples]
        return "\n".join(lines)


def status(run_dir: str | Path, show: int = 5) -> RunDirStatus:
    from skillgen.rundir.rundir import RunDir

    rd = RunDir.read_only(run_dir)
    meta = rd.meta()
    n = int(meta["config"]["n_sentences"])
    rows = rd.rows()
    raw = rd.rows(dedupe=False)
    fails = rd.failures()
    per_key = Counter(rows["request_key"].to_list())
    complete = sum(1 for count in per_key.values() if count >= n)
    history = meta.get("history") or []
    policy = meta["config"].get("unknown_outcome", "worst_case")
    rec = reconcile(rd, meta, policy)
    return RunDirStatus(
        run_dir=str(run_dir), model=meta["config"]["model"], prompt_version=meta.get("prompt_version"),
        fingerprint=meta.get("fingerprint"), sentences_per_skill=n, skills_complete=complete,
        skills_partial=len(per_key) - complete, skills_failed=fails.height, sentences=rows.height,
        duplicate_rows_on_disk=raw.height - rows.height,
        prompt_tokens=int(raw.unique("request_key", keep="first")["prompt_tokens"].sum() or 0) if raw.height else 0,
        cost_usd=rec.spent_usd, reconciliation=rec, invocations=len(history),
        last_run=LastRun.of(history[-1].get("summary", {})) if history else None, batches=batch_status(rd),
        failures_by_class=dict(fails.group_by("error_class").len().iter_rows()) if fails.height else {},
        failure_examples=[FailureExample(**r) for r in fails.head(show).select("label", "error_class", "message").to_dicts()],
    )


def batch_status(run_dir: RunDir) -> BatchStatus | None:
    """Batch mode's batches (None for an online-only run dir)."""
    from skillgen.batch.state import load_manifest

    manifest = load_manifest(run_dir)
    if manifest is None:
        return None
    open_entries = manifest.open_entries()
    return BatchStatus(
        by_status=dict(Counter(e.status for e in manifest.entries)),
        open=[OpenBatch(e.seq, e.batch_id, e.status, dict(e.request_counts)) for e in open_entries],
        held_worst_case_usd=sum(e.worst_case_usd for e in open_entries),
        unattributed_usd=manifest.spent_unattributed(),
    )


def reconcile(run_dir: RunDir, meta: dict[str, Any], policy: UnknownPolicy) -> Reconciliation:
    """The run dir's spend by the ledger, next to its rows and failure records and the invocations' estimates."""
    spend = run_dir.spend(policy)
    estimates = [h.get("summary", {}).get("estimated_cost_usd") or 0.0 for h in meta.get("history") or []]
    return Reconciliation(
        spent_usd=spend.total_usd, ledger=spend.ledger, rows_and_failures_usd=spend.rows_and_failures_usd,
        not_in_rows_usd=spend.ledger.known_usd - spend.rows_and_failures_usd, estimates_usd=sum(estimates),
        invocations=len(estimates),
    )


def run(args: argparse.Namespace) -> int:
    info = status(args.run_dir, args.failures)
    print(json.dumps(info.to_dict(), indent=2, default=str) if args.json else info.format())
    return 0
