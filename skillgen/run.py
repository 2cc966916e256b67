"""The driver of a generation run: check everything, then orchestrate Ray actors.

Order matters: config, price, run dir, skill selection and the endpoint are
all checked *before* any worker starts, so a mistake costs nothing. Then one
budget actor, one scheduler actor and N worker actors are started; the driver
polls the scheduler for accepted rows and failure records and is the only
writer of shards (atomic Parquet files). A dead worker's leases go back to
the queue and the restarted actor is set to work again. Ctrl-C / SIGTERM stop
new requests, let in-flight ones finish (bounded), flush, and exit; a rerun
with the same config resumes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from skillgen.config import GenerationConfig
from skillgen.common.errors import UserError
from skillgen.pricing import config_price
from skillgen.progress import ProgressReporter
from skillgen.prompts import build_messages
from skillgen.common.raycluster import init_ray
from skillgen.common.storage import resolve
from skillgen.runstate import load_progress, open_run_dir, record_invocation, request_key
from skillgen.sinks import FAILURE_SCHEMA, FAILURES_DIR, ROW_SCHEMA, ROWS_DIR, ShardWriter, utcnow
from skillgen.tokens import count_tokens

log = logging.getLogger(__name__)

WORKER_NAME_PREFIX = "skillgen-worker-"  # named actors, so operators (and tests) can find and kill them


@dataclass
class RunSummary:
    run_dir: str
    status: str  # "complete", "incomplete", "stopped: <reason>", "interrupted"
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
    actual_cost_usd: float  # this invocation, from reported usage
    total_cost_usd: float  # everything this run dir has paid for
    estimated_prompt_tokens: int
    elapsed_s: float
    workers: int
    budget: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        return (
            f"{self.status}: {self.skills_completed} skills completed, {self.skills_failed} failed, "
            f"{self.skills_remaining} remaining ({self.skills_already_done} were done before) | "
            f"{self.rows_written} rows, {self.failures_written} failure records written | "
            f"{self.requests} requests, {self.retries} retries, {self.rate_limited} 429s, {self.truncated} truncated | "
            f"tokens {self.prompt_tokens} prompt (estimated {self.estimated_prompt_tokens}) + {self.completion_tokens} completion | "
            f"cost ${self.actual_cost_usd:.4f} (estimate up to ${self.estimated_cost_usd:.4f}; run dir total ${self.total_cost_usd:.4f}) | "
            f"{self.elapsed_s:.1f} s"
        )


def preflight(config: GenerationConfig) -> None:
    """Fail before spending if the endpoint is unreachable or rejects the key."""
    import httpx2

    from skillgen.client import resolve_api_key

    key = resolve_api_key(config.api_key_env, config.base_url)
    try:
        resp = httpx2.get(f"{config.base_url}/models", headers={"Authorization": f"Bearer {key}"},
                          timeout=httpx2.Timeout(config.connect_timeout_s))
    except httpx2.HTTPError as exc:
        raise UserError(f"endpoint {config.base_url} is unreachable ({type(exc).__name__}); check --base-url") from None
    if resp.status_code in (401, 403):
        raise UserError(f"endpoint {config.base_url} rejected the API key from ${config.api_key_env} (HTTP {resp.status_code})")


def build_tasks(config: GenerationConfig, skills, progress) -> tuple[list[dict[str, Any]], int, int]:
    """Tasks for the skills not yet finished, and how many were already done; plus their prompt tokens."""
    tasks, already, prompt_est = [], 0, 0
    n = config.n_sentences
    seen = set()
    for skill in skills:
        key = request_key(config, skill.skill_id)
        if key in seen:
            continue
        seen.add(key)
        have = progress.have.get(key, {})
        if len(have) >= n or (key in progress.failed and not config.retry_failures):
            already += 1
            continue
        missing = [i for i in range(n) if i not in have]
        avoid = [have[i] for i in sorted(have)]
        tasks.append({
            "request_key": key,
            "skill": {"skill_id": skill.skill_id, "label": skill.label, "alt_labels": list(skill.alt_labels),
                      "description": skill.description},
            "missing": missing,
            "avoid": avoid,
        })
        prompt_est += count_tokens(config.model, build_messages(skill, len(missing), config.prompt_spec, avoid=avoid[-40:]))
    return tasks, already, prompt_est


class _Interrupt(Exception):
    pass


def run_generation(config: GenerationConfig, progress: bool = True, on_update: Any = None) -> RunSummary:
    """Generate sentences for the selected skills into ``config.run_dir``; resumable, budget-aware.

    ``on_update(scheduler_state, budget_snapshot)`` is called on every driver tick (benchmarks, UIs).
    ``config.mode == "batch"`` sends the same requests through the Batch API instead (:mod:`skillgen.batch`).
    """
    if config.mode == "batch":
        from skillgen.batch.driver import run_batch

        return run_batch(config, progress=progress)
    import ray

    from skillgen.budget import BudgetActor
    from skillgen.estimate import selected_skills
    from skillgen.scheduler import Scheduler
    from skillgen.workers import WorkerActor

    t0 = time.monotonic()
    price = config_price(config)  # unknown model: UserError before anything else
    open_run_dir(config)  # writable, same fingerprint
    skills = selected_skills(config)
    state = load_progress(config.run_dir)
    tasks, already, prompt_est = build_tasks(config, skills, state)
    est_cost = price.cost(prompt_est, config.max_tokens * len(tasks))
    if config.spend_cap_usd is not None and state.spent_usd >= config.spend_cap_usd and tasks:
        raise UserError(f"spend cap ${config.spend_cap_usd:.4f} already reached by this run dir "
                        f"(${state.spent_usd:.4f} spent); rerun with a higher --spend-cap-usd to continue")
    if tasks and config.preflight:
        preflight(config)

    rows_w = ShardWriter(resolve(config.run_dir) / ROWS_DIR, ROW_SCHEMA, config.flush_rows, config.flush_seconds)
    fail_w = ShardWriter(resolve(config.run_dir) / FAILURES_DIR, FAILURE_SCHEMA, config.flush_rows, config.flush_seconds)
    reporter = ProgressReporter(len(tasks), enabled=progress, interval_s=config.progress_interval_s)
    started_at = utcnow().isoformat()
    status = "complete"
    sched_state: dict[str, Any] = {"finished": 0, "failed": 0, "workers": {}}
    budget_snap: dict[str, Any] = {}
    n_workers = 0

    if not tasks:
        reporter.close()
        return _finish(config, "complete", skills, already, tasks, rows_w, fail_w, sched_state, budget_snap,
                       prompt_est, est_cost, state.spent_usd, t0, 0, started_at)

    init_ray(config.ray_address, include_dashboard=False)
    n_workers = config.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    # Workers read the key from their own environment (a cluster node's, a Kubernetes Secret). Only a
    # worker that lacks it gets the driver's value, as a masked task argument: never in config,
    # runtime_env, logs or files.
    from skillgen.client import Secret

    driver_secret = Secret(os.environ.get(config.api_key_env))

    budget = ray.remote(BudgetActor).options(num_cpus=0, max_concurrency=1).remote(
        rpm=config.rpm, tpm=config.tpm, input_tpm=config.input_tpm, output_tpm=config.output_tpm,
        spend_cap_usd=config.spend_cap_usd, spent_before_usd=state.spent_usd,
        price_in=price.input_per_1m, price_out=price.output_per_1m, quantile=config.max_tokens_quantile,
    )
    scheduler = ray.remote(Scheduler).options(num_cpus=0).remote(tasks, config.n_sentences)
    cfg_dict = config.public_dict()
    worker_cls = ray.remote(WorkerActor)
    workers = {}
    run_tag = uuid.uuid4().hex[:8]
    for i in range(n_workers):
        wid = f"w{i}"
        opts: dict[str, Any] = dict(num_cpus=config.worker_num_cpus, max_restarts=-1, max_task_retries=0,
                                    max_concurrency=1000, name=f"{WORKER_NAME_PREFIX}{run_tag}-{wid}",
                                    resources=config.worker_resources or None)
        workers[wid] = worker_cls.options(**opts).remote(wid, cfg_dict, scheduler, budget, price.input_per_1m, price.output_per_1m)

    interrupted = threading.Event()
    old_term = None
    terminate = threading.Event()
    old_int = None
    if threading.current_thread() is threading.main_thread():
        def _on_signal(signum, frame):  # noqa: ARG001
            # The first Ctrl-C / SIGTERM only sets a flag: raising here could land between draining
            # paid rows from the scheduler and writing them. A second one aborts at once.
            if terminate.is_set():
                raise KeyboardInterrupt
            terminate.set()
        old_term = signal.signal(signal.SIGTERM, _on_signal)
        old_int = signal.signal(signal.SIGINT, _on_signal)

    def secret_for(wid: str) -> Any:
        try:
            has_own = ray.get(workers[wid].has_env.remote(config.api_key_env), timeout=60)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
            has_own = False  # a restarting actor cannot answer yet: send the masked key, as before
        return None if has_own else driver_secret

    refs: dict[Any, str] = {workers[w].run.remote(secret_for(w)): w for w in workers}
    stop_deadline = None
    try:
        while refs:
            try:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.25)
                for ref in ready:
                    wid = refs.pop(ref)
                    try:
                        ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                        log.warning("worker %s died (%s); its skills go back to the queue", wid, type(exc).__name__)
                        ray.get(scheduler.release_worker.remote(wid))
                        ray.get(budget.release_worker.remote(wid))
                    st = ray.get(scheduler.state.remote())
                    budget_stop = ray.get(budget.snapshot.remote()).get("stop_reason")
                    if not st["stopped"] and not budget_stop and not interrupted.is_set() and st["queued"] > 0:
                        refs[workers[wid].run.remote(secret_for(wid))] = wid  # a restarted actor picks up released work
                out = ray.get(scheduler.drain.remote())
                rows_w.add(out["rows"])
                fail_w.add(out["failures"])
                rows_w.maybe_flush()
                fail_w.maybe_flush()
                sched_state = out["state"]
                budget_snap = ray.get(budget.snapshot.remote())
                if on_update is not None:
                    on_update(sched_state, budget_snap)
                ws = sched_state.get("workers", {})
                reporter.update(sched_state["finished"], sched_state["failed"], sched_state["sentences"],
                                ws.get("prompt_tokens", 0) + ws.get("completion_tokens", 0),
                                budget_snap.get("spent_total_usd", 0.0), int(ws.get("retries", 0)),
                                int(ws.get("rate_limited", 0)))
                if terminate.is_set() and not interrupted.is_set():
                    raise KeyboardInterrupt  # handled below, at a point where no drained row is in hand
                if stop_deadline is not None and time.monotonic() > stop_deadline:
                    log.warning("in-flight requests did not finish in time; leaving them (they will be redone)")
                    break
            except KeyboardInterrupt:
                if interrupted.is_set():
                    raise
                interrupted.set()
                status = "interrupted"
                log.warning("interrupted: no new requests; waiting for in-flight ones (Ctrl-C again to abort)")
                scheduler.stop.remote("interrupted")
                budget.stop.remote("interrupted")
                stop_deadline = time.monotonic() + min(60.0, config.request_timeout_s)
                rows_w.flush()  # a supervisor may follow up with SIGKILL within seconds
                fail_w.flush()
    finally:
        try:
            out = ray.get(scheduler.drain.remote(), timeout=10)
            rows_w.add(out["rows"])
            fail_w.add(out["failures"])
            sched_state = out["state"]
            budget_snap = ray.get(budget.snapshot.remote(), timeout=10)
        except Exception as exc:  # noqa: BLE001 - flush what we have no matter what
            log.warning("could not drain the scheduler: %r", exc)
        rows_w.flush()
        fail_w.flush()
        reporter.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)
        for actor in list(workers.values()) + [scheduler, budget]:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001
                pass

    stop_reason = budget_snap.get("stop_reason") or sched_state.get("stopped")
    if status != "interrupted" and stop_reason:
        status = f"stopped: {stop_reason}"
    summary = _finish(config, status, skills, already, tasks, rows_w, fail_w, sched_state, budget_snap,
                      prompt_est, est_cost, state.spent_usd, t0, n_workers, started_at)
    if stop_reason == "spend cap":
        log.warning("spend cap $%.4f reached ($%.4f spent in total); %d skills remain: rerun with a higher "
                    "--spend-cap-usd to continue", config.spend_cap_usd or 0, summary.total_cost_usd, summary.skills_remaining)
    return summary


def _finish(config, status, skills, already, tasks, rows_w, fail_w, sched_state, budget_snap, prompt_est, est_cost,
            spent_before, t0, n_workers, started_at) -> RunSummary:
    ws = sched_state.get("workers", {}) if sched_state else {}
    completed = sched_state.get("finished", 0) - sched_state.get("failed", 0)
    remaining = len(tasks) - sched_state.get("finished", 0)
    if status == "complete" and remaining > 0:
        status = "incomplete"
    actual = float(budget_snap.get("spent_usd", ws.get("cost_usd", 0.0)) or 0.0)
    summary = RunSummary(
        run_dir=str(config.run_dir), status=status, skills_selected=len(skills), skills_already_done=already,
        skills_attempted=len(tasks), skills_completed=completed, skills_failed=sched_state.get("failed", 0),
        skills_remaining=remaining, rows_written=rows_w.written, failures_written=fail_w.written,
        requests=int(ws.get("requests", 0)), retries=int(ws.get("retries", 0)), rate_limited=int(ws.get("rate_limited", 0)),
        truncated=int(ws.get("truncated", 0)), prompt_tokens=int(ws.get("prompt_tokens", 0)),
        completion_tokens=int(ws.get("completion_tokens", 0)), estimated_cost_usd=est_cost, actual_cost_usd=actual,
        total_cost_usd=spent_before + actual, estimated_prompt_tokens=prompt_est, elapsed_s=time.monotonic() - t0,
        workers=n_workers, budget=budget_snap,
    )
    record_invocation(config.run_dir, {"started_at": started_at, "finished_at": utcnow().isoformat(),
                                       "summary": {k: v for k, v in summary.to_dict().items() if k != "budget"}})
    log.info("%s", summary.format())
    return summary
