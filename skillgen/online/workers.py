"""Worker actor: one asyncio loop per CPU keeping many requests in flight.

Concurrency is not a fixed number: each worker holds up to
``max_active_per_worker`` skills, every attempt of every skill first awaits a
reservation from the global budget, and the budget decides how many run at
once. Reservation requests and settlements are batched into one budget round
trip per tick, and results reach the scheduler in batches piggy-backed on
chunk requests, so per-request Ray overhead stays small.

Per skill: ask for the missing sentences, validate, keep what is valid (emitted
at once as rows, so paid sentences survive a crash), re-request the shortfall
with the kept sentences listed as "avoid", up to ``max_content_attempts``
responses; then either done or a failure record with the reason. With a run
seed, every request carries :func:`~skillgen.llm.client.request_seed` of the
slots it asks for, so its body does not depend on which worker sends it when.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from typing import Any, Callable

from dataclasses import replace

from skillgen.config import GenerationConfig
from skillgen.llm.client import CallResult, ChatClient, RequestError, call_with_retry, request_seed
from skillgen.llm.pricing import Price
from skillgen.llm.prompts import build_messages
from skillgen.llm.tokens import count_tokens, size_max_tokens
from skillgen.llm.validate import validate_response
from skillgen.online.messages import ReserveItem, Settlement, SkillTask, WorkerReport
from skillgen.rundir.ledger import Outcome
from skillgen.rundir.sinks import FailureRecord, Row, utcnow
from skillgen.summary import RequestCounters

__all__ = ["STOPPED", "WorkerActor", "WorkerCore"]

log = logging.getLogger(__name__)

STOPPED = "stopped"


class WorkerCore:
    """The worker's logic, independent of Ray (the actor below only forwards).

    ``scheduler`` and ``budget`` are anything with Ray's calling convention
    (``handle.method.remote(...)`` returning an awaitable); ``clock`` paces the
    progress reports (injectable, like the budget's, for tests).
    """

    def __init__(self, worker_id: str, config: dict[str, Any], scheduler: Any, budget: Any, price: Price,
                 clock: Callable[[], float] = time.monotonic):
        self.id = worker_id
        self.clock = clock
        self.cfg = GenerationConfig(**config)
        self.scheduler = scheduler
        self.budget = budget
        self.price = price
        self.pending: list[tuple[asyncio.Future, ReserveItem]] = []
        self.settles: list[Settlement] = []
        self.kept_rows: list[Row] = []  # every row of this run, for the driver if the scheduler dies
        self.out_rows: list[Row] = []
        self.out_failures: list[FailureRecord] = []
        self.out_done: list[str] = []
        self.out_released: list[str] = []
        self.stop_reason: str | None = None
        self.per_sentence: float | None = None
        self.stats = RequestCounters()
        self.wake = asyncio.Event()

    # ---- budget ----------------------------------------------------------------

    async def reserve(self, item: ReserveItem) -> int:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending.append((fut, item))
        self.wake.set()
        return await fut

    def settle(self, settlement: Settlement) -> None:
        self.settles.append(settlement)

    def _stop_waiters(self, reason: str) -> None:
        """No reservation will come: fail every waiting attempt (and take no new work)."""
        self.stop_reason = self.stop_reason or reason
        for fut, _ in self.pending:
            if not fut.done():
                fut.set_exception(RequestError(STOPPED, reason, retryable=False))
        self.pending.clear()

    async def exchange_loop(self) -> None:
        """Settle and reserve in one budget round trip per tick. If the budget actor is gone, every
        waiting attempt fails at once (the worker then stops) instead of waiting forever."""
        try:
            await self._exchange_forever()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a dead budget actor, or a bug: stop, never hang
            log.error("worker %s: budget exchange failed (%s); stopping", self.id, type(exc).__name__)
            self._stop_waiters(f"budget unavailable: {type(exc).__name__}")

    async def _exchange_forever(self) -> None:
        while True:
            if not self.pending and not self.settles:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=0.2)
                except asyncio.TimeoutError:
                    pass
                continue
            # Rows reach the scheduler before their 200s reach the budget, so the driver's mark (taken
            # from the budget before it drains the scheduler) covers only 200s whose rows it drained.
            # Settles are taken first: one added while the report is on its way waits for the next tick.
            settles, self.settles = self.settles, []
            if self.out_rows and settles:
                await self._to_scheduler("report", self.id, self._take_report())
            batch = self.pending[:256]
            res = await self.budget.exchange.remote(self.id, settles, [item for _, item in batch])
            self.per_sentence = res.per_sentence
            for (fut, _), rid in zip(batch, res.granted):
                if fut.done():  # its attempt was cancelled while waiting: the grant was never used
                    self.settle(Settlement(rid, error_class=Outcome.CANCELLED))
                else:
                    fut.set_result(rid)
            del self.pending[: len(res.granted)]
            if res.stop:
                if not self.stop_reason:
                    self.scheduler.stop.remote(res.stop)  # no more chunks for anyone
                self._stop_waiters(res.stop)
            elif self.pending and res.wait > 0:
                await asyncio.sleep(min(res.wait, 0.5))

    # ---- one request -----------------------------------------------------------

    def max_tokens_for(self, n: int, bump: int) -> int:
        if not self.cfg.adaptive_max_tokens:
            return self.cfg.max_tokens
        return size_max_tokens(self.per_sentence, n, self.cfg.max_tokens, self.cfg.max_tokens_margin, bump)

    async def attempt(self, client: ChatClient, messages, prompt_est: int, max_tokens: int, header_key: str, n: int,
                      attempt_no: int = 1, seed: int | None = None) -> CallResult:
        if self.stop_reason:
            raise RequestError(STOPPED, self.stop_reason, retryable=False)
        rid = await self.reserve(ReserveItem(prompt_est, max_tokens, header_key, attempt_no))
        self.stats.requests += 1
        try:
            result = await client.complete(messages, max_tokens, header_key, seed=seed)
        except RequestError as exc:
            self.stats.errors += 1
            if exc.error_class == "rate_limit":
                self.stats.rate_limited += 1
            self.settle(Settlement(rid, status=exc.status, error_class=exc.error_class, retry_after=exc.retry_after,
                                   headers=exc.headers))
            raise
        except BaseException:
            self.settle(Settlement(rid, error_class="connection"))  # cancelled mid-flight: outcome unknown
            raise
        self.stats.ok += 1
        pt = result.prompt_tokens if result.prompt_tokens is not None else prompt_est
        ct = result.completion_tokens if result.completion_tokens is not None else 0
        self.settle(Settlement(rid, status=200, prompt_tokens=result.prompt_tokens, completion_tokens=ct,
                               sentences_requested=n, headers=result.headers))
        result.prompt_tokens, result.completion_tokens = pt, ct
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        cost = self.price.cost(pt, ct)
        self.stats.cost_usd += cost
        result.cost = cost  # type: ignore[attr-defined]
        return result

    def _on_retry(self, exc: RequestError) -> None:
        self.stats.retries += 1

    # ---- one skill -------------------------------------------------------------

    async def handle(self, client: ChatClient, task: SkillTask) -> None:
        cfg = self.cfg
        skill = task.skill
        key = task.request_key
        missing = list(task.missing)
        avoid = list(task.avoid)
        full = len(missing) == cfg.n_sentences
        cost_acc = 0.0
        responses = 0
        transport_attempts = 0
        problems: list[str] = []
        bump = 0
        while missing and responses < cfg.max_content_attempts:
            n = len(missing)
            # answers so far, this invocation's and earlier ones' (as batch mode counts): a resumed or retried
            # skill never replays a request a deterministic server already answered unusably
            seed = request_seed(cfg.seed, key, missing, task.answered + responses)
            messages = build_messages(skill, n, cfg.prompt_spec, avoid=avoid[-40:])
            prompt_est = count_tokens(cfg.model, messages)
            max_tokens = self.max_tokens_for(n, bump)
            if full and responses == 0:
                header_key = key
            else:
                sig = hashlib.sha1(",".join(map(str, missing)).encode()).hexdigest()[:8]
                header_key = f"{key}:{responses}:{sig}"
            calls = 0

            async def once() -> CallResult:
                nonlocal calls
                calls += 1
                return await self.attempt(client, messages, prompt_est, max_tokens, header_key, n, calls, seed)

            try:
                result = await call_with_retry(once, cfg.max_attempts, cfg.backoff_base_s, cfg.backoff_max_s, self._on_retry)
            except RequestError as exc:
                transport_attempts += calls
                if exc.error_class == STOPPED:
                    self.out_released.append(key)
                    return
                self.out_failures.append(self._failure(task, exc.error_class, exc.message, transport_attempts, len(missing), cost_acc))
                if exc.stops_run:
                    self.stop_reason = exc.error_class
                    try:
                        self.budget.stop.remote(f"{exc.error_class}: {exc.message}")
                        self.scheduler.stop.remote(f"{exc.error_class}: {exc.message}")
                    except Exception:  # pragma: no cover - best effort
                        pass
                return
            transport_attempts += calls
            responses += 1
            cost_acc += getattr(result, "cost", 0.0)
            v = validate_response(result.content, n, existing=avoid, max_words=cfg.max_sentence_words, label=skill.label)
            if result.finish_reason == "length":
                self.stats.truncated += 1
                bump += 1
                v.parse_error = v.parse_error or "truncated"
            if v.sentences:
                share = cost_acc / len(v.sentences)
                cost_acc = 0.0
                now = utcnow()
                for sentence in v.sentences:
                    idx = missing.pop(0)
                    row = Row(skill.skill_id, skill.label, sentence, idx, key, cfg.model, cfg.prompt_version,
                              result.prompt_tokens, result.completion_tokens, share, now)
                    self.out_rows.append(row)
                    self.kept_rows.append(row)
                    avoid.append(sentence)
                self.stats.sentences += len(v.sentences)
            if missing:
                self.stats.invalid += 1
                problems.append(f"{v.describe()} (finish_reason={result.finish_reason})")
        if missing:
            reason = f"{cfg.n_sentences - len(missing)}/{cfg.n_sentences} valid sentences after {responses} responses: " + "; ".join(problems[-3:])
            self.out_failures.append(self._failure(task, "validation", reason, transport_attempts, len(missing), cost_acc))
        else:
            self.out_done.append(key)

    def _failure(self, task: SkillTask, error_class, message, attempts, n_missing, cost) -> FailureRecord:
        return FailureRecord.of(task.skill, task.request_key, error_class, message, attempts, n_missing, cost)

    # ---- main loop -------------------------------------------------------------

    def _take_report(self) -> WorkerReport:
        rep = WorkerReport(self.out_rows, self.out_failures, self.out_done, self.out_released, replace(self.stats))
        self.out_rows, self.out_failures, self.out_done, self.out_released = [], [], [], []
        return rep

    async def _to_scheduler(self, method: str, *args: Any, **kw: Any) -> Any:
        """Call the scheduler; if it is gone, stop taking work (rows stay in ``kept_rows`` for the driver)."""
        try:
            return await getattr(self.scheduler, method).remote(*args, **kw)
        except Exception as exc:  # noqa: BLE001 - ActorDiedError and friends
            if not self.stop_reason:
                log.error("worker %s: scheduler unavailable (%s); stopping", self.id, type(exc).__name__)
            self._stop_waiters(f"scheduler unavailable: {type(exc).__name__}")
            return None

    async def run(self, secret: Any = None, client: ChatClient | None = None) -> RequestCounters:
        """Pull chunks until the scheduler has none and nothing is in flight; ``client`` defaults to the config's endpoint."""
        cfg = self.cfg
        client = client or ChatClient(
            cfg.base_url, cfg.model, cfg.api_key_env, timeout_s=cfg.request_timeout_s,
            connect_timeout_s=cfg.connect_timeout_s, temperature=cfg.temperature, top_p=cfg.top_p,
            response_format=cfg.request_response_format(), key_fallback=secret,
        )
        self.stop_reason = None
        exchanger = asyncio.create_task(self.exchange_loop())
        active: set[asyncio.Task] = set()
        exhausted = False
        last_report = self.clock()
        try:
            while True:
                want_more = (not exhausted and not self.stop_reason and len(active) < cfg.max_active_per_worker
                             and len(self.pending) < 2 * cfg.chunk_size)
                if want_more:
                    k = min(cfg.chunk_size, cfg.max_active_per_worker - len(active))
                    res = await self._to_scheduler("next_chunk", self.id, k, self._take_report())
                    last_report = self.clock()
                    if res is None:
                        continue
                    if res.stop:
                        self.stop_reason = self.stop_reason or res.stop
                    for task in res.tasks:
                        active.add(asyncio.create_task(self.handle(client, task)))
                    if not res.tasks:
                        exhausted = True
                    continue
                if not active:
                    break
                done, _ = await asyncio.wait(active, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    active.discard(t)
                    if t.exception() is not None:  # a bug: keep the skill for a rerun, do not hide it
                        log.error("worker %s: skill task crashed: %r", self.id, t.exception())
                if self.clock() - last_report > 0.25 or len(self.out_rows) > 500:
                    await self._to_scheduler("report", self.id, self._take_report())
                    last_report = self.clock()
                if exhausted and not self.stop_reason and len(active) < cfg.chunk_size:
                    exhausted = False  # work may have been released by a dead worker: ask again
        finally:
            for t in active:
                t.cancel()
            await asyncio.gather(*active, return_exceptions=True)  # each settles what it sent
            exchanger.cancel()
            await asyncio.gather(exchanger, return_exceptions=True)
            await self._final_settle()
            await self._to_scheduler("report", self.id, self._take_report())
            await client.close()
        return replace(self.stats)

    async def _final_settle(self) -> None:
        """Flush settlements so the budget and ledger are exact; grants we never saw are cancelled."""
        try:
            settles, self.settles = self.settles, []
            if settles:
                await self.budget.exchange.remote(self.id, settles, [])
            await self.budget.end_worker.remote(self.id)
        except Exception as exc:  # noqa: BLE001 - budget gone: the ledger counts these as unknown (worst case)
            log.error("worker %s: could not settle with the budget (%s)", self.id, type(exc).__name__)


class WorkerActor:
    """Ray actor wrapper (async: its methods run on one event loop)."""

    def __init__(self, worker_id: str, config: dict[str, Any], scheduler_name: str, budget_name: str, price: Price):
        # The control actors come by name, not as handles: Ray keeps handle arguments of a restartable
        # actor in the object store (and warns on every start); a name also finds them after a restart.
        import ray

        scheduler, budget = ray.get_actor(scheduler_name), ray.get_actor(budget_name)
        self.core = WorkerCore(worker_id, config, scheduler, budget, price)

    async def run(self, secret: Any = None) -> RequestCounters:
        return await self.core.run(secret)

    async def rows_kept(self) -> list[dict[str, Any]]:
        """Every row this worker produced in this run (the driver's fallback when the scheduler died)."""
        return list(self.core.kept_rows)

    async def has_env(self, name: str) -> bool:
        """Whether this worker's own environment holds ``name`` (then the driver sends no key)."""
        return bool(os.environ.get(name))

    async def ping(self) -> str:
        return self.core.id

    async def pid(self) -> int:
        return os.getpid()
