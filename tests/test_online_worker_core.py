"""The worker's logic without Ray: a real scheduler core and a fake budget behind fake handles, an injected clock.

``handle`` runs against the built-in simulator over loopback HTTP with the real
client (content faults on demand); the run loop's pacing runs against a client
whose answers the test releases, so nothing depends on timing luck.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from helpers.online_fakes import FakeBudget, FakeClock, Handle, handle_with_exchange, task

from skillgen.llm.client import CallResult, ChatClient
from skillgen.llm.pricing import Price
from skillgen.online.scheduler import Scheduler
from skillgen.online.workers import WorkerCore
from skillgen.simulator import SimulatorConfig, run_in_thread

KEY_ENV = "SKILLGEN_WORKER_CORE_TEST_KEY"


def config(base_url: str = "http://127.0.0.1:9/v1", **kw: Any) -> dict[str, Any]:
    values = dict(base_url=base_url, model="simulator", n_sentences=3, api_key_env=KEY_ENV, max_tokens=600,
                  request_timeout_s=10.0, backoff_base_s=0.01, backoff_max_s=0.05, max_content_attempts=2,
                  chunk_size=2, max_active_per_worker=4)
    values.update(kw)
    return values


def core(cfg: dict[str, Any], tasks, budget: FakeBudget | None = None, clock=None):
    scheduler = Scheduler(tasks, n_sentences=cfg["n_sentences"])
    budget = budget or FakeBudget()
    kwargs = {"clock": clock} if clock else {}
    worker = WorkerCore("w1", cfg, Handle(scheduler), Handle(budget), price=Price(1.0, 2.0), **kwargs)
    return worker, scheduler, budget


def handle_over_http(worker: WorkerCore, base_url: str, t) -> None:
    """``handle`` one task against ``base_url`` with the real client."""

    async def go():
        client = ChatClient(base_url, "simulator", KEY_ENV, timeout_s=10.0)
        try:
            await handle_with_exchange(worker, client, t)
        finally:
            await client.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def sim():
    with run_in_thread(SimulatorConfig(seed=4)) as server:
        yield server


@pytest.fixture(scope="module")
def empty_sim():
    with run_in_thread(SimulatorConfig(seed=4, fault_rates={"empty": 1.0})) as server:
        yield server


def test_a_skill_becomes_its_rows_and_every_attempt_is_settled_with_its_usage(sim, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-worker-core")
    worker, _, budget = core(config(sim.base_url), [])
    handle_over_http(worker, sim.base_url, task(0))
    assert [r.sample_idx for r in worker.out_rows] == [0, 1, 2]
    assert worker.out_done == ["k0"] and worker.out_failures == []
    assert len({r.sentence for r in worker.out_rows}) == 3
    ok = [s for s in budget.settled if s.status == 200]
    assert len(ok) == 1 and budget.ended == ["w1"]
    assert ok[0].prompt_tokens == worker.stats.prompt_tokens > 0
    assert ok[0].completion_tokens == worker.stats.completion_tokens > 0
    expected_cost = (worker.stats.prompt_tokens * 1.0 + worker.stats.completion_tokens * 2.0) / 1e6
    assert sum(r.cost_usd for r in worker.out_rows) == pytest.approx(expected_cost)
    assert sim.stats()["served"] >= 1


def test_empty_answers_end_in_one_failure_record_after_max_content_attempts(empty_sim, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-worker-core")
    worker, _, budget = core(config(empty_sim.base_url, max_content_attempts=2), [])
    handle_over_http(worker, empty_sim.base_url, task(1))
    assert worker.out_rows == [] and worker.out_done == []
    [fail] = worker.out_failures
    assert fail.request_key == "k1" and fail.error_class == "validation"
    assert fail.n_missing == 3 and fail.attempts == 2
    assert fail.cost_usd == pytest.approx(worker.stats.cost_usd) and fail.cost_usd > 0  # paid for, kept
    assert [s.status for s in budget.settled] == [200, 200]
    assert worker.stats.invalid == 2


def test_a_budget_stop_releases_the_skill_and_stops_the_scheduler():
    worker, scheduler, budget = core(config(), [task(0)], budget=FakeBudget(stop_after_grants=0))

    async def go():
        client = ChatClient("http://127.0.0.1:9/v1", "simulator", KEY_ENV)  # never called: no grant
        try:
            return await asyncio.wait_for(worker.run(client=client), timeout=30)
        finally:
            await client.close()

    stats = asyncio.run(go())
    assert stats.requests == 0
    assert scheduler.stopped == "spend cap reached"
    assert worker.out_released == [] and scheduler.next_chunk("w2", 5).tasks == []  # stopped: no handout
    assert scheduler.drain().failures == []  # released, not failed: a rerun asks again
    assert "k0" not in scheduler.finished and budget.ended == ["w1"]


class GatedClient:
    """Answers a request once the test opens its gate (per request key): three valid sentences."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.closed = False

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    async def complete(self, messages, max_tokens: int, header_key: str, seed: int | None = None) -> CallResult:
        await self.gate(header_key.split(":")[0]).wait()
        content = json.dumps({"sentences": [f"You will drive forklift {header_key} in shift {i}." for i in range(3)]})
        return CallResult(content, "stop", prompt_tokens=50, completion_tokens=30)

    async def close(self) -> None:
        self.closed = True


def test_progress_reports_follow_the_injected_clock_and_every_row_arrives_once():
    clock = FakeClock()
    cfg = config(chunk_size=1, max_active_per_worker=2)
    worker, scheduler, budget = core(cfg, [task(0), task(1)], clock=clock)
    handle = worker.scheduler

    def reports() -> int:
        return sum(1 for name, _ in handle.calls if name == "report")

    async def go():
        client = GatedClient()
        running = asyncio.create_task(worker.run(client=client))
        client.gate("k0").set()
        for _ in range(100):  # k0 answered and reported with its settlement; k1 still waiting
            await asyncio.sleep(0.05)
            if "k0" in scheduler.finished:
                break
        assert "k0" in scheduler.finished
        before = reports()
        await asyncio.sleep(0.6)  # frozen clock: no periodic report however long real time runs
        assert reports() == before
        clock.advance(0.3)
        for _ in range(40):
            await asyncio.sleep(0.05)
            if reports() > before:
                break
        assert reports() > before  # 0.3 s on the worker's clock: a progress report went out
        client.gate("k1").set()
        stats = await asyncio.wait_for(running, timeout=30)
        assert client.closed
        return stats

    stats = asyncio.run(go())
    rows = scheduler.drain().rows
    assert sorted(r.slot for r in rows) == [(k, i) for k in ("k0", "k1") for i in range(3)]
    assert scheduler.finished == {"k0", "k1"} and stats.requests == 2 and budget.ended == ["w1"]


class UnusableClient:
    """Answers every request with no sentences, as a deterministic server replaying a bad answer would."""

    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    async def complete(self, messages, max_tokens: int, header_key: str, seed: int | None = None) -> CallResult:
        self.seeds.append(seed)
        return CallResult(json.dumps({"sentences": []}), "stop", prompt_tokens=50, completion_tokens=5)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("answered", [0, 2])
def test_a_resumed_skill_counts_its_earlier_answers_so_no_request_is_replayed(answered: int):
    """The seed's ``repeat`` is the answers the key got so far, earlier invocations included (the ledger's, in
    ``SkillTask.answered``): a skill retried after failing validation sends new requests, not the ones a
    deterministic server already answered unusably (those would be paid again for the same bad answer)."""
    from dataclasses import replace

    from skillgen.llm.client import request_seed

    worker, _, _ = core(config(seed=5), [])
    client = UnusableClient()
    asyncio.run(handle_with_exchange(worker, client, replace(task(0), answered=answered)))
    assert client.seeds == [request_seed(5, "k0", range(3), answered + i) for i in range(2)]
    assert len(set(client.seeds)) == 2
