"""The run-dir contract, the same for every way of generating: mode (online, batch) x storage (local, s3://).

Each case runs ``skillgen run`` as a user does (a CLI process, the real openai client, the simulator over
loopback; online mode on real Ray; ``s3://`` on SeaweedFS) and checks:

- one writer: while the first run holds the run dir (frozen with SIGSTOP, so the check does not race its
  end), a second run in *either* mode exits 2 naming the holder;
- after the run and a rerun every (skill, sample) slot is filled exactly once and the provider saw each
  request key once (batch lines counted as requests): the rerun sends nothing;
- the ledger's tokens equal what the simulator billed (within 0.5%);
- nothing was written outside the run dir (the working directory stays empty; on S3 every key is under it);
- ``skillgen status`` says what the ledger says.

Batch x local is the fast case in the default suite; the others start Ray or SeaweedFS and are slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from skillgen.common.storage import resolve
from skillgen.rundir.lease import LEASE_FILE
from skillgen.rundir.ledger import ledger_totals, read_ledger
from skillgen.rundir.rundir import RunDir
from skillgen.commands.status import status
from skillgen.simulator import run_in_thread
from helpers.generation import esco, run_cmd, subprocess_env

N_SKILLS, N = 12, 4


def _cmd(mode: str, sim_url: str, csv: Path, run_dir: str) -> list[str]:
    online = ["--workers", "2", "--flush-seconds", "0.3", "--address", "local"] if mode == "online" else []
    return run_cmd(sim_url, csv, run_dir, "--max-tokens", "400", "--no-progress", *online, mode=mode, n=N)


def _env() -> dict[str, str]:
    # the first run is frozen while the second ones start: on a loaded box that may outlast the default
    # 60 s TTL, after which a frozen holder is rightly taken over as stale
    return subprocess_env(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", SKILLGEN_LEASE_TTL_S="900")


def _wait_for_lease(proc: subprocess.Popen, run_dir: str, log: Path, timeout: float = 120.0) -> None:
    lease = resolve(run_dir) / LEASE_FILE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lease.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"first run exited ({proc.returncode}) before taking the lease: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("the first run never took the lease")


def _second_runs_refused(first: subprocess.Popen, sim_url: str, csv: Path, run_dir: str, cwd: Path) -> None:
    """Freeze the holder (it stays the live holder: same host, pid alive), try both modes, thaw it."""
    os.killpg(first.pid, signal.SIGSTOP)
    try:
        for mode in ("online", "batch"):
            out = subprocess.run(_cmd(mode, sim_url, csv, run_dir), env=_env(), cwd=cwd, capture_output=True,
                                 text=True, timeout=120)
            assert out.returncode == 2, (mode, out.returncode, out.stderr[-2000:])
            assert "is in use by" in out.stderr and "skillgen run" in out.stderr, out.stderr
    finally:
        os.killpg(first.pid, signal.SIGCONT)


def _listing(run_dir: str, tmp_path: Path, cwd: Path) -> None:
    assert not any(cwd.iterdir()), f"written outside the run dir: {sorted(p.name for p in cwd.iterdir())}"
    allowed = {"cwd", "first.log", "rerun.log", f"skills_{N_SKILLS}.csv", "run"}
    assert {p.name for p in tmp_path.iterdir()} <= allowed
    if run_dir.startswith("s3://"):
        root = resolve(run_dir)
        bucket = resolve(run_dir.rsplit("/", 1)[0])
        keys = [str(p) for p in bucket.list("*", recursive=True)]
        assert keys and all(k.startswith(str(root) + "/") for k in keys if not k == str(root)), keys[:5]


def _check_books(run_dir: str, mode: str, stats: dict) -> None:
    rd = RunDir.read_only(run_dir)
    rows = rd.rows(dedupe=False)
    assert rows.height == N_SKILLS * N and rows.select("skill_id", "sample_idx").is_duplicated().sum() == 0
    keys = set(rows["request_key"].unique().to_list())
    seen = stats["batch_billed_by_custom_id"] if mode == "batch" else stats["served_by_key"]
    assert {k: v for k, v in seen.items() if v} == {k: 1 for k in keys}, "a request key was sent twice or not at all"
    if mode == "batch":
        billed = stats["batch_prompt_tokens_billed"] + stats["batch_completion_tokens_billed"]
    else:
        billed = stats["prompt_tokens_billed"] + stats["completion_tokens_billed"]
    totals = ledger_totals(run_dir)
    assert totals.by_outcome == {"200": N_SKILLS} and totals.pending_attempts == 0 and totals.unknown_attempts == 0
    assert abs(totals.prompt_tokens + totals.completion_tokens - billed) <= 0.005 * billed
    if mode == "batch":
        assert totals.known_usd == pytest.approx(stats["batch_cost_usd"], rel=1e-6)
    # every attempt names who sent it; which online worker took which skill is the scheduler's choice
    # (with 12 skills one worker may take them all), so only the set of possible writers is fixed
    writers = set(read_ledger(run_dir)["worker"].to_list())
    assert writers == {"batch"} if mode == "batch" else (writers and writers <= {"w0", "w1"})
    info = status(run_dir).to_dict()  # what `skillgen status --json` prints
    led = info["reconciliation"]["ledger"]
    assert info["cost_usd"] == pytest.approx(totals.spent_usd, rel=1e-9)
    assert (led["attempts"], led["prompt_tokens"], led["completion_tokens"]) == (
        totals.attempts, totals.prompt_tokens, totals.completion_tokens)
    assert info["skills_complete"] == N_SKILLS and info["sentences"] == N_SKILLS * N


def contract(mode: str, run_dir: str, tmp_path: Path) -> None:
    csv = esco(tmp_path, N_SKILLS)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with run_in_thread(latency="fixed:0.05", batch_seconds_per_line=0.02) as sim:
        log = tmp_path / "first.log"
        with open(log, "w") as fh:
            first = subprocess.Popen(_cmd(mode, sim.base_url, csv, run_dir), env=_env(), cwd=cwd, stdout=fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for_lease(first, run_dir, log)
            _second_runs_refused(first, sim.base_url, csv, run_dir, cwd)
            assert first.wait(300) == 0, log.read_text()[-3000:]
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
        with open(tmp_path / "rerun.log", "w") as fh:
            rerun = subprocess.run(_cmd(mode, sim.base_url, csv, run_dir), env=_env(), cwd=cwd, stdout=fh,
                                   stderr=subprocess.STDOUT, timeout=300)
        assert rerun.returncode == 0, (tmp_path / "rerun.log").read_text()[-3000:]
        stats = sim.stats()
    _check_books(run_dir, mode, stats)
    _listing(run_dir, tmp_path, cwd)


def test_contract_batch_local(tmp_path: Path):
    contract("batch", str(tmp_path / "run"), tmp_path)


@pytest.mark.slow
def test_contract_online_local(tmp_path: Path):
    contract("online", str(tmp_path / "run"), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["online", "batch"])
def test_contract_on_s3(mode: str, s3_bucket: str, tmp_path: Path):
    contract(mode, f"{s3_bucket}/run", tmp_path)
