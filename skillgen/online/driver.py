"""The driver of a generation run: check everything, then orchestrate Ray actors.

Order matters: config, price, run dir (and its lease: one writer per run dir),
skill selection and the endpoint are all checked *before* any worker starts,
so a mistake costs nothing. Then :class:`GenerationDriver` starts one budget
actor (which writes the request ledger, see :mod:`skillgen.rundir.ledger`), one
scheduler actor and N worker actors; it polls the scheduler for accepted rows
and failure records and is the only writer of shards (atomic Parquet files).
A dead worker's leases go back to the queue and the restarted actor is set to
work again. A dead budget or scheduler actor stops the run within seconds
(exit 3): the ledger already holds every request that may have been sent, so
nothing is lost from the books, and a rerun finishes the work. Ctrl-C /
SIGTERM stop new requests, let in-flight ones finish (bounded), flush, and
exit; a rerun with the same config resumes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import asdict
from typing import Any

from skillgen.common.raycluster import init_ray
from skillgen.config import GenerationConfig
from skillgen.llm.pricing import config_price
from skillgen.online.messages import BudgetSnapshot, Drained, SchedulerState
from skillgen.online.progress import ProgressReporter
from skillgen.plan import RunPlan, plan_run, preflight
from skillgen.rundir.rundir import RunDir
from skillgen.summary import RunSummary, StopReason, Tally, close_invocation

__all__ = ["BUDGET_NAME_PREFIX", "SCHEDULER_NAME_PREFIX", "WORKER_NAME_PREFIX", "GenerationDriver", "run_online"]

log = logging.getLogger(__name__)

WORKER_NAME_PREFIX = "skillgen-worker-"  # named actors, so operators (and tests) can find and kill them
BUDGET_NAME_PREFIX = "skillgen-budget-"
SCHEDULER_NAME_PREFIX = "skillgen-scheduler-"


class ControlActorLost(Exception):
    """The budget or scheduler actor died: the run stops cleanly (exit 3); the ledger keeps what was sent."""

    def __init__(self, which: str):
        super().__init__(which)
        self.which = which


def _actor_gone() -> tuple[type[BaseException], ...]:
    import ray

    return (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError)


def run_online(config: GenerationConfig, run_dir: RunDir, progress: bool = True, on_update: Any = None) -> RunSummary:
    """Online mode on an open run dir (its lease held): plan, preflight, then run the Ray actors.

    ``on_update(scheduler_state, budget_snapshot)`` is called on every driver tick (benchmarks, UIs).
    """
    price = config_price(config)  # unknown model: UserError before anything else
    plan = plan_run(config, price, run_dir)
    if plan.tasks and config.preflight:
        preflight(config)
    return GenerationDriver(config, price, plan, run_dir, progress, on_update).run()


class GenerationDriver:
    """One invocation's driver: start actors, poll them, react to a lost worker or control actor or a
    signal, shut down, summarise. The driver is the only writer of shards; the budget actor writes the ledger.
    """

    def __init__(self, config: GenerationConfig, price, plan: RunPlan, run_dir: RunDir, progress: bool = True,
                 on_update: Any = None):
        self.config, self.price, self.plan, self.run_dir = config, price, plan, run_dir
        self.on_update = on_update
        self.rows_w = run_dir.row_writer(config.flush_rows, config.flush_seconds)
        self.fail_w = run_dir.failure_writer(config.flush_rows, config.flush_seconds)
        self.reporter = ProgressReporter(len(plan.tasks), enabled=progress, interval_s=config.progress_interval_s,
                                         run=run_dir.root.name)
        self.written = plan.written
        self.stop_reason: str | None = None  # set by the driver itself (signal, lost lease or actor)
        self.sched_state = SchedulerState()
        self.budget_snap: BudgetSnapshot | None = None
        self.lost: set[str] = set()  # control actors found dead
        self.workers: dict[str, Any] = {}
        self.refs: dict[Any, str] = {}
        self.scheduler = self.budget = None
        self.stop_deadline: float | None = None
        self.interrupted = threading.Event()
        self.terminate = threading.Event()
        self._old_signals: dict[int, Any] = {}

    # ---- lifecycle ---------------------------------------------------------------

    def run(self) -> RunSummary:
        if not self.plan.tasks:
            self.reporter.close()
            return self.finish()
        try:
            self.start()
            while self.refs and not self._past_deadline():
                try:
                    self.poll_once()
                except KeyboardInterrupt:
                    self.interrupt()
                except ControlActorLost as exc:
                    self.control_actor_lost(exc.which)
        finally:
            self.shutdown()
        return self.finish()

    def start(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from skillgen.online.budget import Budget
        from skillgen.online.budget_actor import BudgetActor
        from skillgen.llm.client import Secret
        from skillgen.online.scheduler import Scheduler
        from skillgen.online.workers import WorkerActor

        cfg = self.config
        init_ray(cfg.ray_address, include_dashboard=False)
        n_workers = cfg.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Workers read the key from their own environment (a cluster node's, a Kubernetes Secret). Only a
        # worker that lacks it gets the driver's value, as a masked task argument: never in config,
        # runtime_env, logs or files.
        self.driver_secret = Secret(os.environ.get(cfg.api_key_env))
        # The budget actor writes the ledger into the run dir: it runs on this (the driver's) node.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        run_tag = uuid.uuid4().hex[:8]
        self.budget = ray.remote(BudgetActor).options(num_cpus=0, max_concurrency=1, scheduling_strategy=here,
                                                      name=f"{BUDGET_NAME_PREFIX}{run_tag}").remote(
            Budget.for_run(cfg, self.price, self.plan.spent_before, self.run_dir.ledger_writer()))
        self.scheduler = ray.remote(Scheduler).options(num_cpus=0, name=f"{SCHEDULER_NAME_PREFIX}{run_tag}").remote(
            self.plan.tasks, cfg.n_sentences)
        worker_cls = ray.remote(WorkerActor)
        for i in range(n_workers):
            wid = f"w{i}"
            self.workers[wid] = worker_cls.options(
                num_cpus=cfg.worker_num_cpus, max_restarts=-1, max_task_retries=0, max_concurrency=1000,
                name=f"{WORKER_NAME_PREFIX}{run_tag}-{wid}", resources=cfg.worker_resources or None,
            ).remote(wid, cfg.public_dict(), f"{SCHEDULER_NAME_PREFIX}{run_tag}", f"{BUDGET_NAME_PREFIX}{run_tag}",
                     self.price)
        self._install_signals()
        for wid in self.workers:
            self._start_worker(wid)

    def poll_once(self) -> None:
        """One tick: collect finished workers, drain accepted rows into shards, report progress."""
        import ray

        ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=0.25)
        for ref in ready:
            self.worker_returned(ref)
        if "budget" not in self.lost:
            self.budget_snap = self._call(self.budget.snapshot, "budget")  # its settle_seq: before the drain
        if "scheduler" not in self.lost:
            self._take(self._call(self.scheduler.drain, "scheduler"))
            self._confirm_persisted()
        if self.on_update is not None:
            self.on_update(self.sched_state, self.budget_snap)
        self._report_progress()
        if self.run_dir.lost and not self.stop_deadline:
            self._begin_stop(StopReason.LEASE_LOST, grace_s=5.0)
        if self.terminate.is_set() and not self.interrupted.is_set():
            raise KeyboardInterrupt  # handled in run(), at a point where no drained row is in hand

    def _report_progress(self, final: bool = False) -> None:
        """The progress line and the ``skillgen_*`` gauges; ``final`` publishes even within a second of the last."""
        st = self.sched_state
        w = st.workers
        self.reporter.update(st.finished, st.failed, st.sentences, w.prompt_tokens + w.completion_tokens,
                             self.budget_snap.spent_total_usd if self.budget_snap else 0.0, w.retries,
                             w.rate_limited, final=final, requests=w.requests)

    def worker_returned(self, ref: Any) -> None:
        wid = self.refs.pop(ref)
        try:
            import ray

            ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - RayActorError, or a bug in the worker's run loop
            self.worker_lost(wid, exc)
        if self.stop_deadline is None and not self.lost:
            st = self._call(self.scheduler.state, "scheduler")
            budget_stop = self.budget_snap.stop_reason if self.budget_snap else None
            if not st.stopped and not budget_stop and st.queued > 0:
                self._start_worker(wid)  # a restarted actor picks up released work

    def worker_lost(self, wid: str, exc: BaseException) -> None:
        log.warning("worker %s died (%s); its skills go back to the queue", wid, type(exc).__name__)
        if "scheduler" not in self.lost:
            self._call(self.scheduler.release_worker, "scheduler", wid)
        if "budget" not in self.lost:
            self._call(self.budget.release_worker, "budget", wid)

    def interrupt(self) -> None:
        """First Ctrl-C / SIGTERM: no new requests; in-flight ones may finish (bounded)."""
        if self.interrupted.is_set():
            raise KeyboardInterrupt
        self.interrupted.set()
        log.warning("interrupted: no new requests; waiting for in-flight ones (Ctrl-C again to abort)")
        self._begin_stop(StopReason.INTERRUPTED, grace_s=min(60.0, self.config.request_timeout_s))
        self.rows_w.flush()  # a supervisor may follow up with SIGKILL within seconds
        self.fail_w.flush()

    def control_actor_lost(self, which: str) -> None:
        """The budget or scheduler actor died: stop within seconds. Requests still in flight are cut off
        and counted in the ledger as unknown (worst case); a rerun redoes what is missing."""
        if which in self.lost:
            return
        self.lost.add(which)
        log.error("the %s actor died; stopping the run (rerun the same command to continue)", which)
        reason = {"budget": StopReason.BUDGET_LOST, "scheduler": StopReason.SCHEDULER_LOST}[which]
        self._begin_stop(reason, grace_s=5.0)

    def shutdown(self) -> None:
        """Write everything accepted, settle every reservation into the ledger, stop every actor."""
        try:
            if "budget" not in self.lost:
                self.budget_snap = self._call(self.budget.snapshot, "budget", timeout=10)
        except ControlActorLost:
            self.lost.add("budget")
        try:
            if "scheduler" not in self.lost:
                self._take(self._call(self.scheduler.drain, "scheduler", timeout=10))
        except ControlActorLost:
            self.lost.add("scheduler")
        if "scheduler" in self.lost:
            self._rescue_worker_rows()
        self.rows_w.flush()
        self.fail_w.flush()
        try:
            self._confirm_persisted()
        except ControlActorLost:
            self.lost.add("budget")
        self.reporter.close()
        self._restore_signals()
        for actor in self.workers.values():
            _kill(actor)
        if "budget" not in self.lost:
            try:
                for wid in self.workers:  # what was in flight at the kill: worker_lost (unknown outcome)
                    self._call(self.budget.release_worker, "budget", wid, timeout=10)
                self.budget_snap = self._call(self.budget.close, "budget", timeout=10)
            except ControlActorLost:
                self.lost.add("budget")
        for actor in (self.scheduler, self.budget):
            _kill(actor)
        self._report_progress(final=True)  # the gauges end on the run's totals, not on the last tick's

    def finish(self) -> RunSummary:
        st, snap = self.sched_state, self.budget_snap
        stop_reason = self.stop_reason or (snap.stop_reason if snap else None) or st.stopped
        tally = Tally(st.finished - st.failed, st.failed, self.rows_w.written, self.fail_w.written, st.workers,
                      len(self.workers))
        summary = close_invocation(self.run_dir, self.plan, tally, mode="online", stop_reason=stop_reason,
                                   budget=asdict(snap) if snap else {})
        if stop_reason == StopReason.SPEND_CAP:
            log.warning("spend cap $%.4f reached ($%.4f spent in total); %d skills remain: rerun with a higher "
                        "--spend-cap-usd to continue", self.config.spend_cap_usd or 0, summary.total_cost_usd,
                        summary.skills_remaining)
        return summary

    # ---- helpers -------------------------------------------------------------------

    def _call(self, method: Any, which: str, *args: Any, timeout: float = 60.0) -> Any:
        import ray

        try:
            return ray.get(method.remote(*args), timeout=timeout)
        except _actor_gone() as exc:
            raise ControlActorLost(which) from exc

    def _take(self, out: Drained) -> None:
        for row in out.rows:
            self.written.add(row.slot)
        self.rows_w.add(out.rows)
        self.fail_w.add(out.failures)
        self.rows_w.maybe_flush()
        self.fail_w.maybe_flush()
        self.sched_state = out.state

    def _confirm_persisted(self) -> None:
        """Every row drained so far is on disk: the ledger may now record those 200s as received."""
        if self.rows_w.buffer or "budget" in self.lost or self.budget_snap is None or self.budget_snap.settle_seq is None:
            return
        self._call(self.budget.persisted, "budget", self.budget_snap.settle_seq, timeout=10)

    def _rescue_worker_rows(self) -> None:
        """The scheduler died with accepted rows not yet drained: take them from the workers that made
        them (each slot once), so paid sentences are not lost."""
        import ray

        rescued = 0
        for wid, actor in self.workers.items():
            try:
                rows = ray.get(actor.rows_kept.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - that worker is gone too: its rows are lost, a rerun redoes them
                continue
            for row in rows:
                slot = row.slot
                if slot not in self.written:
                    self.written.add(slot)
                    self.rows_w.add([row])
                    rescued += 1
        log.warning("rescued %d rows from the workers after losing the scheduler", rescued)

    def _start_worker(self, wid: str) -> None:
        import ray

        try:
            has_own = ray.get(self.workers[wid].has_env.remote(self.config.api_key_env), timeout=60)
        except _actor_gone():
            has_own = False  # a restarting actor cannot answer yet: send the masked key, as before
        secret = None if has_own else self.driver_secret
        self.refs[self.workers[wid].run.remote(secret)] = wid

    def _begin_stop(self, reason: StopReason, grace_s: float) -> None:
        """Stop handing out work; the first reason wins, but for an interrupt (the user's word is final)."""
        if self.stop_reason is None or reason == StopReason.INTERRUPTED:
            self.stop_reason = reason
        for actor, which in ((self.scheduler, "scheduler"), (self.budget, "budget")):
            if which not in self.lost:
                actor.stop.remote(str(reason))
        deadline = time.monotonic() + grace_s
        self.stop_deadline = min(self.stop_deadline or deadline, deadline)

    def _past_deadline(self) -> bool:
        if self.stop_deadline is not None and time.monotonic() > self.stop_deadline:
            log.warning("in-flight requests did not finish in time; leaving them (the ledger counts them, a rerun redoes them)")
            return True
        return False

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def _on_signal(signum, frame):  # noqa: ARG001
            # The first Ctrl-C / SIGTERM only sets a flag: raising here could land between draining
            # paid rows from the scheduler and writing them. A second one aborts at once.
            if self.terminate.is_set():
                raise KeyboardInterrupt
            self.terminate.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_signals[sig] = signal.signal(sig, _on_signal)

    def _restore_signals(self) -> None:
        for sig, old in self._old_signals.items():
            signal.signal(sig, old)
        self._old_signals.clear()


def _kill(actor: Any) -> None:
    import ray

    if actor is None:
        return
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001
        pass
