"""Chaos trials for batch mode: the driver SIGKILLed while submitting, polling or collecting; a batch that
expires; a batch cancelled mid-run. Each trial ends with a rerun to completion and the same books as the
online chaos trials (tests/test_gen_chaos.py):

- exactly once: every (skill, sample) slot filled once, every ``custom_id`` billed at most once;
- the ledger: every billed line is one ``200`` attempt with the billed usage (tokens within 0.5%, cost equal),
  nothing left ``pending`` or ``unknown``, the lines a batch never processed closed with their outcome
  (``expired`` / ``batch_cancelled``), lines of a batch never created closed as cancelled before send;
- ``skillgen status`` reports the ledger's spend.

The simulator runs in this process (its Batch API over loopback), the driver as a user runs it (the CLI).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from skillgen import run_generation
from skillgen.commands.status import status
from skillgen.rundir.ledger import ledger_totals, read_ledger
from skillgen.simulator import run_in_thread
from helpers.generation import assert_complete, batch_entries, esco, gen_config, run_cmd, subprocess_env

N_SKILLS, N = 60, 4
UNPROCESSED = {"expired", "batch_cancelled", "batch_failed", "cancelled_before_send"}


def _cli(sim, csv: Path, run_dir: Path, *extra: str) -> list[str]:
    return run_cmd(sim.base_url, csv, run_dir, "--max-tokens", "400", "--no-progress", *extra, mode="batch", n=N)


def _kill_when(cmd: list[str], run_dir: Path, log: Path, predicate, timeout: float = 180.0) -> None:
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=subprocess_env(), cwd=log.parent, stdout=fh,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(batch_entries(run_dir)):
                proc.send_signal(signal.SIGKILL)
                break
            assert proc.poll() is None, f"driver ended before the kill: {log.read_text()[-2000:]}"
            time.sleep(0.01)
        else:
            raise AssertionError(f"kill point never reached: {log.read_text()[-2000:]}")
    finally:
        proc.kill()
        proc.wait(30)


def check_books(run_dir: Path, stats: dict, unprocessed: set[str] | None = None) -> dict:
    assert_complete(run_dir, N_SKILLS, N)
    billed = stats["batch_billed_by_custom_id"]
    assert billed and set(billed.values()) == {1}, "a line was billed twice"
    ledger = read_ledger(run_dir)
    outcomes = Counter(ledger["outcome"].to_list())
    assert set(ledger["worker"].to_list()) == {"batch"}
    assert outcomes["200"] == sum(billed.values()), outcomes
    assert not {"pending", "unknown"} & set(outcomes), outcomes
    assert set(outcomes) - {"200"} <= UNPROCESSED, outcomes
    if unprocessed:
        assert unprocessed <= set(outcomes), outcomes
    ok = ledger.filter(ledger["outcome"] == "200")
    assert ok["attempt_id"].n_unique() == ok.height
    totals = ledger_totals(run_dir)
    tokens = stats["batch_prompt_tokens_billed"] + stats["batch_completion_tokens_billed"]
    assert abs(totals.prompt_tokens + totals.completion_tokens - tokens) <= 0.005 * tokens
    assert totals.known_usd == pytest.approx(stats["batch_cost_usd"], rel=1e-6)
    assert totals.spent_usd == pytest.approx(stats["batch_cost_usd"], rel=1e-6)  # no open line held any more
    assert status(str(run_dir)).cost_usd == pytest.approx(totals.spent_usd, rel=1e-9)
    return dict(outcomes)


def _rerun(sim, csv: Path, run_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run(_cli(sim, csv, run_dir), env=subprocess_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


KILL_POINTS = {
    # several small batches are submitted one after another: killed between two of them
    "submitting": lambda es: 1 <= sum(1 for e in es if e.batch_id) < 6,
    "polling": lambda es: len(es) == 6 and all(e.batch_id for e in es) and not any(e.collected for e in es),
    "collecting": lambda es: any(e.collected for e in es) and not all(e.collected for e in es),
}


@pytest.mark.slow
@pytest.mark.parametrize("phase", sorted(KILL_POINTS))
def test_driver_sigkill(phase: str, tmp_path: Path):
    csv = esco(tmp_path, N_SKILLS)
    run_dir = tmp_path / "run"
    with run_in_thread(batch_seconds_per_line=0.01, batch_validating_s=0.0, seed=7) as sim:
        _kill_when(_cli(sim, csv, run_dir, "--batch-max-requests", "10"), run_dir, tmp_path / "killed.log",
                   KILL_POINTS[phase])
        time.sleep(0.5)  # the batches go on at the provider meanwhile
        _rerun(sim, csv, run_dir, tmp_path)
        stats = sim.stats()
    print(phase, check_books(run_dir, stats))


def test_expired_batch(tmp_path: Path):
    with run_in_thread(batch_seconds_per_line=0.03, batch_validating_s=0.0, batch_expire_s=0.6) as sim:
        config = gen_config(sim.base_url, esco(tmp_path, N_SKILLS), tmp_path / "run", mode="batch",
                            model="gpt-4o-mini", n_sentences=N, batch_poll_min_s=0.05, batch_poll_max_s=0.3,
                            batch_max_rounds=20)
        summary = run_generation(config, progress=False)
        stats = sim.stats()
    first = batch_entries(tmp_path / "run")[0]
    assert summary.status == "complete" and len(batch_entries(tmp_path / "run")) >= 2
    assert first.status == "expired" and 0 < first.request_counts["completed"] < N_SKILLS  # its finished part kept
    check_books(tmp_path / "run", stats, unprocessed={"expired"})


@pytest.mark.slow
def test_cancelled_batch(tmp_path: Path):
    from skillgen.batch.cancel import cancel_run

    csv = esco(tmp_path, N_SKILLS)
    run_dir = tmp_path / "run"
    log = tmp_path / "driver.log"
    with run_in_thread(batch_seconds_per_line=0.05, batch_validating_s=0.0) as sim:
        with open(log, "w") as fh:
            proc = subprocess.Popen(_cli(sim, csv, run_dir), env=subprocess_env(),
                                    cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while not any(e.request_counts.get("completed", 0) > 0 for e in batch_entries(run_dir)):
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
                time.sleep(0.02)
            cancel_run(run_dir)
            assert proc.wait(120) == 3, log.read_text()[-2000:]
        finally:
            proc.kill()
        _rerun(sim, csv, run_dir, tmp_path)
        stats = sim.stats()
    assert batch_entries(run_dir)[0].status == "cancelled"
    check_books(run_dir, stats, unprocessed={"batch_cancelled"})
