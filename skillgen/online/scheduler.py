"""Hands out skills in small chunks and is the single source of truth for what is done.

Why a coordinator actor: static shards strand work on a slow or dead worker.
Workers pull ``chunk_size`` skills at a time; the scheduler records a lease
per worker and accepts each reported sentence only for a ``sample_idx`` that is
still missing (so a late or duplicated report can never create a duplicate
row). When a worker dies the driver calls :meth:`release_worker` and its
unfinished skills go back to the front of the queue with their missing
indices recomputed from what was already received. The driver drains
accepted rows and failures from here and writes them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from skillgen.online.messages import Chunk, Drained, SchedulerState, SkillTask, WorkerReport
from skillgen.rundir.sinks import FailureRecord, Row
from skillgen.summary import RequestCounters

__all__ = ["Scheduler"]


class Scheduler:
    def __init__(self, tasks: list[SkillTask], n_sentences: int):
        self.n = n_sentences
        self.tasks = {t.request_key: t for t in tasks}
        self.queue: deque[str] = deque(t.request_key for t in tasks)
        self.leases: dict[str, set[str]] = {}
        self.received: dict[str, dict[int, str]] = {}
        self.finished: set[str] = set()
        self.failed: set[str] = set()
        self.out_rows: list[Row] = []
        self.out_failures: list[FailureRecord] = []
        self.worker_stats: dict[str, RequestCounters] = {}
        self.stopped: str | None = None
        self.duplicates_dropped = 0
        self.reassigned = 0

    # ---- workers -----------------------------------------------------------------

    def _task_view(self, key: str) -> SkillTask:
        task = self.tasks[key]
        got = self.received.get(key, {})
        if got:
            task = replace(task, missing=tuple(i for i in task.missing if i not in got),
                           avoid=task.avoid + tuple(got.values()))
        return task

    def next_chunk(self, worker: str, k: int, report: WorkerReport | None = None) -> Chunk:
        if report is not None:
            self.report(worker, report)
        out = []
        if not self.stopped:
            lease = self.leases.setdefault(worker, set())
            while self.queue and len(out) < k:
                key = self.queue.popleft()
                if key in self.finished:
                    continue
                view = self._task_view(key)
                if not view.missing:
                    self.finished.add(key)
                    continue
                lease.add(key)
                out.append(view)
        return Chunk(out, self.stopped, len(self.queue))

    def report(self, worker: str, report: WorkerReport) -> None:
        lease = self.leases.setdefault(worker, set())
        for row in report.rows:
            key = row.request_key
            task = self.tasks.get(key)
            got = self.received.setdefault(key, {})
            idx = row.sample_idx
            if task is None or idx in got or idx not in task.missing or key in self.finished:
                self.duplicates_dropped += 1
                continue
            got[idx] = row.sentence
            self.out_rows.append(row)
        for fail in report.failures:
            key = fail.request_key
            if key in self.finished:
                continue
            self.failed.add(key)
            self.finished.add(key)
            lease.discard(key)
            self.out_failures.append(fail)
        for key in report.done:
            self.finished.add(key)
            lease.discard(key)
        for key in report.released:
            if key in lease and key not in self.finished:
                lease.discard(key)
                self.queue.appendleft(key)
        if report.stats is not None:
            self.worker_stats[worker] = report.stats

    def release_worker(self, worker: str) -> int:
        lease = self.leases.pop(worker, set())
        back = [k for k in lease if k not in self.finished]
        for key in back:
            self.queue.appendleft(key)
        self.reassigned += len(back)
        return len(back)

    def pid(self) -> int:
        """The actor's process id (operators and chaos tests kill it with a signal)."""
        import os

        return os.getpid()

    def stop(self, reason: str) -> None:
        if not self.stopped:
            self.stopped = reason

    # ---- driver --------------------------------------------------------------------

    def drain(self) -> Drained:
        rows, self.out_rows = self.out_rows, []
        failures, self.out_failures = self.out_failures, []
        return Drained(rows, failures, self.state())

    def state(self) -> SchedulerState:
        totals = RequestCounters.total(list(self.worker_stats.values()))
        return SchedulerState(
            total=len(self.tasks), finished=len(self.finished), failed=len(self.failed), queued=len(self.queue),
            leased=sum(len(v) for v in self.leases.values()), stopped=self.stopped,
            duplicates_dropped=self.duplicates_dropped, reassigned=self.reassigned,
            sentences=sum(len(v) for v in self.received.values()), workers=totals,
        )
