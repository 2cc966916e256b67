"""The request ledger and what reads it: spend by outcome, the cap, damaged files, repair, retries."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from skillgen.llm.pricing import Price
from skillgen.online.budget import Budget
from skillgen.online.budget_actor import BudgetActor
from skillgen.online.messages import ReserveItem, Settlement
from skillgen.online.spend import SpendGuard
from skillgen.llm.client import RequestError, call_with_retry
from skillgen.common.errors import UserError
from skillgen.rundir.ledger import LedgerWriter, ledger_totals, read_ledger
from skillgen.rundir.runstate import load_progress
from skillgen.rundir.rundir import RunDir
from skillgen.rundir.sinks import ROW_SCHEMA, ROWS_DIR, read_rows, utcnow, write_parquet_atomic
from helpers.generation import esco, gen_config

REPO = Path(__file__).resolve().parent.parent
PRICE = Price(1.0, 2.0)  # USD per 1M tokens


def _actor(run_dir: Path, spend_cap_usd: float | None = None) -> BudgetActor:
    return BudgetActor(Budget(SpendGuard(PRICE, cap=spend_cap_usd, ledger=LedgerWriter(run_dir))))


def test_every_grant_is_in_the_ledger_before_it_is_handed_out_and_outcomes_are_priced(tmp_path: Path):
    b = _actor(tmp_path)
    items = [ReserveItem(1000, 500, f"k{i}", 1) for i in range(6)]
    rids = b.exchange("w0", [], items).granted
    assert read_ledger(tmp_path)["outcome"].to_list() == ["unknown"] * 6  # on disk already, as sent
    statuses = [Settlement(rids[0], status=200, prompt_tokens=900, completion_tokens=100),
                Settlement(rids[1], status=429, error_class="rate_limit"),
                Settlement(rids[2], status=400, error_class="bad_request"),
                Settlement(rids[3], status=500, error_class="http_500"),
                Settlement(rids[4], error_class="timeout")]  # rids[5]: never settled (its process died)
    b.exchange("w0", statuses, [])
    b.close()
    # a 200 is "received" only once the driver says its rows are on disk; until then it is unknown
    assert ledger_totals(tmp_path).by_outcome == {"429": 1, "4xx": 1, "5xx": 1, "timeout": 1, "unknown": 2}
    assert b.persisted(b.budget.guard.settle_seq) == 1
    worst = (1000 * 1.0 + 500 * 2.0) / 1e6
    t = ledger_totals(tmp_path, "worst_case")
    assert t.by_outcome == {"200": 1, "429": 1, "4xx": 1, "5xx": 1, "timeout": 1, "unknown": 1}
    assert (t.prompt_tokens, t.completion_tokens) == (900, 100)
    assert t.known_usd == pytest.approx((900 + 200) / 1e6)
    assert t.unknown_attempts == 2 and t.unknown_usd == pytest.approx(2 * worst)
    assert ledger_totals(tmp_path, "prompt_only").unknown_usd == pytest.approx(2 * 1000 / 1e6)
    assert ledger_totals(tmp_path, "free").spent_usd == pytest.approx(t.known_usd)


def test_timeouts_and_dead_workers_count_against_the_cap(tmp_path: Path):
    """Before the ledger, a timeout or a dead worker's request was settled at $0 and the cap could be passed."""
    worst = (1000 + 2 * 1000) / 1e6
    b = _actor(tmp_path, spend_cap_usd=2.5 * worst)
    first = b.exchange("w0", [], [ReserveItem(1000, 1000, "a", 1)] * 3).granted
    assert len(first) == 2  # a third worst case would cross the cap
    b.exchange("w0", [Settlement(first[0], error_class="timeout")], [])
    assert b.release_worker("w0") == 1  # first[1] died with its worker
    reply = b.exchange("w1", [], [ReserveItem(1000, 1000, "b", 1)])
    assert reply.granted == [] and reply.stop == "spend cap"
    assert ledger_totals(tmp_path).spent_usd == pytest.approx(2 * worst)


def test_a_grant_never_used_is_settled_so_reserve_can_stop_near_the_cap(tmp_path: Path):
    """A reservation granted to an attempt cancelled while waiting used to stay in flight forever: near the
    cap every later reserve answered 'wait'. The worker now settles it as cancelled_before_send."""
    worst = 3000 / 1e6
    b = _actor(tmp_path, spend_cap_usd=1.5 * worst)
    (rid,) = b.exchange("w0", [], [ReserveItem(1000, 1000, "a", 1)]).granted
    assert b.exchange("w0", [], [ReserveItem(1000, 1000, "b", 1)]).wait > 0  # waits for the in-flight one
    b.exchange("w0", [Settlement(rid, error_class="cancelled_before_send")], [])
    # nothing in flight now: with the cap unreachable the budget stops instead of waiting again
    b2 = _actor(tmp_path / "2", spend_cap_usd=0.5 * worst)
    assert b2.exchange("w0", [], [ReserveItem(1000, 1000, "c", 1)]).stop == "spend cap"
    reply = b.exchange("w0", [], [ReserveItem(1000, 1000, "b", 1)])
    assert reply.granted and ledger_totals(tmp_path).by_outcome["cancelled_before_send"] == 1
    assert b.end_worker("w0") == 1  # a grant its worker never saw: cancelled, not left in flight
    assert b.budget.inflight == {}


def test_the_last_failed_attempt_is_not_a_retry():
    retries: list[RequestError] = []

    async def always_503():
        raise RequestError("http_503", "unavailable", retryable=True, status=503)

    with pytest.raises(RequestError):
        asyncio.run(call_with_retry(always_503, 3, 0.001, 0.001, retries.append))
    assert len(retries) == 2  # 3 attempts: 2 retries


def _row(skill: str, idx: int, key: str = "k") -> dict:
    return {"skill_id": skill, "label": "l", "sentence": f"s{idx}", "sample_idx": idx, "request_key": key,
            "model": "m", "prompt_version": "v", "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.5,
            "created_at": utcnow()}


def test_a_column_first_seen_in_a_later_shard_is_read(tmp_path: Path):
    folder = tmp_path / ROWS_DIR
    old = pl.DataFrame([_row("a", 0)], schema=ROW_SCHEMA).drop("completion_tokens")  # an older writer
    write_parquet_atomic(old, folder / "part-001.parquet")
    write_parquet_atomic(pl.DataFrame([_row("a", 1)], schema=ROW_SCHEMA), folder / "part-002.parquet")
    rows = read_rows(tmp_path).sort("sample_idx")
    assert rows["completion_tokens"].to_list() == [None, 5]


def test_damaged_shard_is_named_and_repair_makes_a_rerun_redo_exactly_its_slots(tmp_path: Path):
    cfg = gen_config("http://127.0.0.1:9/v1", esco(tmp_path, 3), tmp_path / "run")
    RunDir.open(cfg).close()
    from skillgen.plan import build_tasks
    from skillgen.plan import selected_skills
    from skillgen.rundir.runstate import request_key

    skills = selected_skills(cfg)
    keys = [request_key(cfg, s.skill_id) for s in skills]
    run = tmp_path / "run"
    good = pl.DataFrame([_row(skills[0].skill_id, i, keys[0]) for i in range(5)], schema=ROW_SCHEMA)
    bad = pl.DataFrame([_row(skills[1].skill_id, i, keys[1]) for i in range(3)], schema=ROW_SCHEMA)
    write_parquet_atomic(good, run / ROWS_DIR / "part-001.parquet")
    damaged = write_parquet_atomic(bad, run / ROWS_DIR / "part-002.parquet")
    damaged.write_bytes(damaged.read_bytes()[:-40])  # a partial copy
    with pytest.raises(UserError, match=r"part-002\.parquet: damaged Parquet file .*skillgen repair"):
        load_progress(run)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    status = subprocess.run([sys.executable, "-m", "skillgen.cli", "status", str(run)], capture_output=True, text=True, env=env)
    assert status.returncode == 2 and len(status.stderr.strip().splitlines()) == 1 and "part-002" in status.stderr
    fixed = subprocess.run([sys.executable, "-m", "skillgen.cli", "repair", str(run)], capture_output=True, text=True, env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert (run / "damaged" / ROWS_DIR / "part-002.parquet").exists()
    tasks, already, _ = build_tasks(cfg, skills, load_progress(run))
    assert already == 1 and {t.request_key: t.missing for t in tasks} == {keys[1]: tuple(range(5)), keys[2]: tuple(range(5))}


def test_damaged_run_json_is_one_line(tmp_path: Path):
    cfg = gen_config("http://127.0.0.1:9/v1", esco(tmp_path, 3), tmp_path / "run")
    RunDir.open(cfg).close()
    (tmp_path / "run" / "run.json").write_text('{"config": ')
    with pytest.raises(UserError, match=r"run\.json: damaged run metadata"):
        RunDir.open(cfg).close()


def test_a_200_counts_at_its_worst_case_against_the_cap_until_its_rows_are_on_disk(tmp_path: Path):
    """Were the driver killed before writing a 200's rows, the ledger would count that attempt at its worst
    case; so must the cap, until the driver confirms the rows are persisted."""
    worst = 3000 / 1e6
    b = _actor(tmp_path, spend_cap_usd=1.9 * worst)
    (rid,) = b.exchange("w0", [], [ReserveItem(1000, 1000, "a", 1)]).granted
    b.exchange("w0", [Settlement(rid, status=200, prompt_tokens=1000, completion_tokens=10)], [])
    assert b.exchange("w0", [], [ReserveItem(1000, 1000, "b", 1)]).granted == []  # would pass the cap if killed now
    b.persisted(b.budget.guard.settle_seq)
    assert len(b.exchange("w0", [], [ReserveItem(1000, 1000, "b", 1)]).granted) == 1
    b.release_worker("w0")
    assert ledger_totals(tmp_path).spent_usd <= 1.9 * worst
