"""Killing the driver (SIGKILL) mid-run, then rerunning: complete, no duplicates, nothing written is paid again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from skillgen.rundir.runstate import load_progress
from skillgen.simulator.process import SimulatorProcess
from helpers.generation import assert_complete, esco, run_cmd, subprocess_env


def _cmd(base_url: str, csv: Path, run_dir: Path, *extra: str) -> list[str]:
    return run_cmd(base_url, csv, run_dir, "--workers", "2", "--flush-seconds", "0.3", "--no-progress", *extra,
                   model="simulator", key_env=None)


@pytest.mark.slow  # ~35 s: two `skillgen run` processes, each starting Ray; .ci/run runs it (the default suite stays under 6 min)
def test_sigkill_driver_then_rerun(tmp_path: Path):
    csv = esco(tmp_path, 80)
    run_dir = tmp_path / "run"
    env = subprocess_env(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    with SimulatorProcess(latency="fixed:0.2", seed=4) as sim:
        # --rpm 20: a burst of 20 skills, then one every 3 s, so the kill lands mid-run
        log = tmp_path / "driver.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(_cmd(sim.base_url, csv, run_dir, "--rpm", "20"), env=env, cwd=tmp_path,
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300  # Ray start-up is slow on a loaded 2-core box
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((run_dir / "shards").glob("part-*.parquet"))) >= 3:
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before it could be killed: {log.read_text()[-2000:]}"
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: the driver and the local Ray it started, at once
        proc.wait(30)
        time.sleep(3)  # the driver's local Ray dies with it; let its in-flight requests drain
        before = load_progress(run_dir)
        written = {k for k, v in before.have.items() if len(v) >= 5}
        assert 0 < len(written) < 80
        sim.reset_stats()
        done = subprocess.run(_cmd(sim.base_url, csv, run_dir), env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        stats = sim.stats()
    assert_complete(run_dir, 80, 5)
    billed_again = [k for k, v in stats["served_by_key"].items() if v and k.split(":")[0] in written]
    assert billed_again == [], "request keys already written were paid for again"
    assert stats["served"] <= 80 - len(written) + 5  # only the rest (plus partial skills' follow-ups)
