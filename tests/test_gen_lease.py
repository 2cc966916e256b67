"""One writer per run dir: the lease refuses a live holder in one line and takes over a stale one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from skillgen.common.errors import UserError
from skillgen.rundir.lease import LEASE_FILE, Lease, LocalLeaseBackend, RunDirLease
from helpers.generation import subprocess_env


def _write_lease(run_dir: Path, lease: Lease) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LEASE_FILE).write_bytes(lease.to_bytes())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid (until the kernel reuses it, far later)


def test_live_holder_is_refused_in_one_line_naming_it(tmp_path: Path):
    run_dir = tmp_path / "run"
    with RunDirLease.acquire(run_dir) as held:
        with pytest.raises(UserError) as err:
            RunDirLease.acquire(run_dir)
        msg = str(err.value)
        assert "\n" not in msg
        assert f"host {socket.gethostname()}" in msg and f"pid {os.getpid()}" in msg and held.lease.started_at in msg
    RunDirLease.acquire(run_dir).release()  # released on exit: free again
    assert not (run_dir / LEASE_FILE).exists()


def test_skillgen_run_refused_while_the_lease_is_held(tmp_path: Path, esco_csv: Path):
    """The CLI path: exit 2, one line on stderr, nothing sent (the refusal comes before Ray and preflight)."""
    run_dir = tmp_path / "run"
    with RunDirLease.acquire(run_dir):
        out = subprocess.run([sys.executable, "-m", "skillgen.cli", "run", "--esco", str(esco_csv), "--base-url",
                              "http://127.0.0.1:9/v1", "--model", "simulator", "--run-dir", str(run_dir), "--no-progress"],
                             capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by skillgen run on host" in lines[0] and f"pid {os.getpid()}" in lines[0], lines


def test_holder_gone_on_this_host_is_taken_over(tmp_path: Path):
    run_dir = tmp_path / "run"
    _write_lease(run_dir, replace(Lease.new(ttl_s=3600), pid=_dead_pid()))
    with RunDirLease.acquire(run_dir) as lease:
        assert lease.lease.pid == os.getpid()
        assert json.loads((run_dir / LEASE_FILE).read_text())["token"] == lease.lease.token


def test_expired_lease_of_another_host_is_taken_over_but_a_fresh_one_is_not(tmp_path: Path):
    run_dir = tmp_path / "run"
    other = replace(Lease.new(ttl_s=30), host="some-other-node", pid=1)
    _write_lease(run_dir, other)
    with pytest.raises(UserError, match="some-other-node"):
        RunDirLease.acquire(run_dir)  # cannot see its pid, and it renewed recently: alive
    _write_lease(run_dir, replace(other, renewed_at=time.time() - 31))
    RunDirLease.acquire(run_dir).release()


def test_a_holder_whose_lease_was_taken_over_knows_it(tmp_path: Path):
    run_dir = tmp_path / "run"
    first = RunDirLease.acquire(run_dir, ttl_s=3600)
    first._stop.set()  # a frozen process: it stops renewing
    backend = LocalLeaseBackend(run_dir / LEASE_FILE)
    lease, version = backend.read()
    assert backend.replace_if_unchanged(replace(lease, renewed_at=0.0), version)  # now expired
    second = RunDirLease.acquire(run_dir)
    assert not first.renew() and first.lost.is_set()  # compare-and-swap refuses the old holder
    first.release()  # must not delete the new holder's lease
    assert backend.read()[0].token == second.lease.token
    second.release()
