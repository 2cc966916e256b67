"""``skillgen run --mode batch`` end to end against the simulator's Batch API, with the real ``openai`` SDK.

Money is what these tests check: nothing uploaded or billed twice, whatever
is killed when; the spend cap holds; rows + failure records = skills asked for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from skillgen import run_generation
from skillgen.batch.state import load_manifest
from skillgen.rundir.rundir import RunDir
from skillgen.simulator import run_in_thread
from skillgen.rundir.sinks import read_failures, read_rows
from helpers.generation import (assert_accounted, assert_billed_once, batch_entries, esco, gen_config, run_cmd,
                                subprocess_env)

FAST_POLL = dict(batch_poll_min_s=0.05, batch_poll_max_s=0.3)


def batch_config(sim, tmp_path: Path, n_skills: int, **kw):
    values = dict(mode="batch", model="gpt-4o-mini", **FAST_POLL)
    values.update(kw)
    return gen_config(sim.base_url, esco(tmp_path, n_skills), tmp_path / "run", **values)


def _cli(sim, csv: Path, run_dir: Path, *extra: str) -> list[str]:
    return run_cmd(sim.base_url, csv, run_dir, "--max-tokens", "600", *extra, mode="batch")


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    """The driver as a user runs it; its output goes to ``log`` (a pipe nobody reads could block it)."""
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, env=subprocess_env(), cwd=log.parent, stdout=fh, stderr=subprocess.STDOUT)


def _wait_for(predicate, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"driver exited early ({proc.returncode}): {log.read_text()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"condition not reached in time: {log.read_text()[-2000:]}")



def test_sigkill_while_polling_then_rerun_pays_nothing_twice(tmp_path: Path):
    csv = esco(tmp_path, 200)
    run_dir = tmp_path / "run"
    log = tmp_path / "driver.log"
    with run_in_thread(batch_seconds_per_line=0.02, seed=1) as sim:
        proc = _start(_cli(sim, csv, run_dir, "--batch-max-requests", "80"), log)
        try:
            # killed while polling: all three batches submitted, none collected yet
            _wait_for(lambda: len([e for e in batch_entries(run_dir) if e.batch_id]) == 3, 120, proc, log)
            assert not any(e.collected for e in batch_entries(run_dir))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(30)
        time.sleep(1.0)  # the batches go on at the provider meanwhile
        done = subprocess.run(_cli(sim, csv, run_dir), env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        stats = sim.stats()
    entries = batch_entries(run_dir)
    assert len(entries) >= 3 and {e.requests for e in entries[:3]} == {80, 40}
    assert stats["batches_created"] == len(entries) and len(stats["files_uploaded"]) == len(entries)
    assert_billed_once(stats)
    assert_accounted(run_dir, 200, 5)
    assert read_rows(run_dir, dedupe=False).height + 5 * read_failures(run_dir).height == 200 * 5


def test_upload_and_batch_made_but_not_recorded_are_found_not_repeated(tmp_path: Path):
    """A driver killed after the provider acted but before the id reached the manifest."""
    from skillgen.batch.api import BatchApi
    from skillgen.batch.driver import BatchRun
    from skillgen.batch.jsonl import pack
    from skillgen.batch.state import seq_name
    from skillgen.plan import selected_skills

    with run_in_thread(batch_seconds_per_line=0.0) as sim:
        config = batch_config(sim, tmp_path, 30)
        rd = RunDir.open(config)
        api = BatchApi(config)
        run = BatchRun(config, rd, api, load_manifest(rd, create=True), selected_skills(config), False)
        run.refresh_queue()
        p = pack(run.queue, 50_000, 10**9, float("inf"), float("inf"))
        entry = run.record_intent(p.lines, p.bytes, p.tokens, p.worst_case_usd)
        file_id = api.upload(rd.batch_file(seq_name("input", entry.seq, "jsonl")).read_bytes(), entry.filename,
                             reconcile=False)
        api.create(file_id, run.manifest.run_id, entry.seq, reconcile=False)  # then the driver "dies"
        api.close()
        rd.close()
        summary = run_generation(config)
        stats = sim.stats()
    assert summary.status == "complete" and summary.skills_completed == 30
    assert stats["files_uploaded"] == {entry.filename: 1} and stats["batches_created"] == 1
    assert_billed_once(stats)
    assert_accounted(tmp_path / "run", 30, 5)


@pytest.mark.slow  # the default suite's expired batch: tests/test_batch_chaos.py::test_expired_batch (same checks and the ledger)
def test_expired_batch_keeps_completed_part_and_resubmits_the_rest(tmp_path: Path):
    with run_in_thread(batch_seconds_per_line=0.03, batch_validating_s=0.0, batch_expire_s=1.0) as sim:
        config = batch_config(sim, tmp_path, 60, batch_max_rounds=20)
        summary = run_generation(config)
        stats = sim.stats()
    entries = batch_entries(tmp_path / "run")
    first = entries[0]
    assert first.status == "expired" and 0 < first.request_counts["completed"] < 60
    assert summary.status == "complete" and summary.skills_completed == 60 and len(entries) >= 2
    assert_billed_once(stats)
    assert_accounted(tmp_path / "run", 60, 5)
    assert read_rows(tmp_path / "run").height == 300


def test_enqueued_token_limit_failure_is_learned_and_resubmitted(tmp_path: Path):
    with run_in_thread(batch_seconds_per_line=0.005, batch_enqueued_token_limit=20_000) as sim:
        config = batch_config(sim, tmp_path, 60, batch_max_requests=20)  # ~16k tokens per 20-line file
        summary = run_generation(config)
        stats = sim.stats()
    manifest = load_manifest(RunDir.read_only(tmp_path / "run"))
    failed = [e for e in manifest.entries if e.status == "failed"]
    assert failed and all(e.errors[0]["code"] == "token_limit_exceeded" for e in failed)
    assert manifest.learned_token_cap is not None and manifest.learned_token_cap < 20_000
    assert summary.status == "complete" and summary.skills_completed == 60
    assert_billed_once(stats)
    assert_accounted(tmp_path / "run", 60, 5)


def test_cancel_stops_the_driver_keeps_finished_lines_and_rerun_completes(tmp_path: Path):
    from skillgen.batch.cancel import cancel_run

    csv = esco(tmp_path, 60)
    run_dir = tmp_path / "run"
    log = tmp_path / "driver.log"
    with run_in_thread(batch_seconds_per_line=0.05, batch_validating_s=0.0) as sim:
        proc = _start(_cli(sim, csv, run_dir), log)
        try:
            _wait_for(lambda: any(e.status == "in_progress" and e.request_counts.get("completed", 0) > 0
                                  for e in batch_entries(run_dir)), 120, proc, log)
            cancelled = cancel_run(run_dir)
            proc.wait(120)
        finally:
            proc.kill()
        # the driver may have seen the marker and cancelled first
        assert len(cancelled) == 1 and cancelled[0][1] in ("cancelling", "cancelled")
        assert proc.returncode == 3 and "stopped: cancelled" in log.read_text(), log.read_text()[-2000:]
        kept = read_rows(run_dir).height
        assert 0 < kept < 300  # finished lines kept, the rest not processed
        summary = run_generation(batch_config(sim, tmp_path, 60))
        stats = sim.stats()
    assert batch_entries(run_dir)[0].status == "cancelled"
    assert summary.status == "complete" and summary.skills_already_done == kept // 5
    assert_billed_once(stats)
    assert_accounted(run_dir, 60, 5)


def test_spend_cap_holds_in_batch_mode_and_a_higher_cap_continues(tmp_path: Path):
    cap = 0.004  # gpt-4o-mini batch price: worst case ~$0.0002 per line, actual ~$0.00005
    with run_in_thread(batch_seconds_per_line=0.002) as sim:
        summary = run_generation(batch_config(sim, tmp_path, 120, spend_cap_usd=cap))
        billed = sim.stats()["batch_cost_usd"]
        assert summary.status == "stopped: spend cap" and 0 < summary.skills_remaining < 120
        assert billed <= cap and summary.total_cost_usd == pytest.approx(billed, rel=1e-6)
        # every batch held its worst case: no batch was created while the open ones could have overrun the cap
        assert all(e.worst_case_usd <= cap for e in batch_entries(tmp_path / "run"))
        summary = run_generation(batch_config(sim, tmp_path, 120, spend_cap_usd=1.0))
        stats = sim.stats()
    assert summary.status == "complete"
    assert_billed_once(stats)
    assert_accounted(tmp_path / "run", 120, 5)
    from skillgen.commands.status import status

    info = status(tmp_path / "run")
    assert info.cost_usd == pytest.approx(stats["batch_cost_usd"], rel=1e-6)
    assert info.batches.by_status == {"completed": len(batch_entries(tmp_path / "run"))}
    assert json.dumps(info.to_dict())  # plain JSON for --json


def test_per_line_errors_and_bad_bodies_get_follow_ups_then_failure_records(tmp_path: Path):
    with run_in_thread(fault_rates="500=0.3,malformed=0.3", seed=5) as sim:
        summary = run_generation(batch_config(sim, tmp_path, 40, max_content_attempts=2))
        stats = sim.stats()
    complete, failed = assert_accounted(tmp_path / "run", 40, 5)
    assert complete and failed and summary.status == "complete"
    assert summary.skills_completed == len(complete) and summary.skills_failed == len(failed)
    failures = read_failures(tmp_path / "run")
    assert set(failures["error_class"]) == {"validation"} and failures["message"].str.contains("answers").all()
    assert any(":" in cid for cid in stats["batch_billed_by_custom_id"])  # follow-up requests were sent
    assert_billed_once(stats)
    assert summary.total_cost_usd == pytest.approx(stats["batch_cost_usd"], rel=1e-6)
