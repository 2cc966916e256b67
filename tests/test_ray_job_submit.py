"""The pipeline as users run it on a cluster: `ray job submit --working-dir` against a Ray head.

A real head (`ray start --head --block` in its own process group, every port free-picked so
it never collides with another Ray on the machine) is stopped by killing that group, even
when the test fails. RAY_AUTH_MODE=disabled: Ray 2.60's token auth would otherwise reject
the job client on loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.ports import free_ports
from helpers.pipeline import check_outputs, tiny_pipeline_config

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def ray_head(tmp_path):
    gcs, dash, client, agent, agent_grpc, env_agent, metrics, node_mgr, obj_mgr = free_ports(9)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    log = open(tmp_path / "ray-head.log", "w")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--num-cpus", "4", "--disable-usage-stats",
         f"--port={gcs}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
         f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
         f"--metrics-export-port={metrics}", f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert head.poll() is None, (tmp_path / "ray-head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Ray head did not come up"
            time.sleep(1)
        yield address, env
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=5)  # `ray start --block` can take 30 s or more to exit on SIGTERM: SIGKILL below
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
        # `ray start` records its head for later plain `ray.init()` calls; don't leave ours behind
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and current.read_text().strip().endswith(f":{gcs}"):
            current.unlink()


@pytest.mark.slow  # ~1.5 min: a Ray head of its own and a whole pipeline; .ci/run runs it
def test_ray_job_submit_runs_the_pipeline(ray_head, tmp_path, tiny_encoder_dir):
    address, env = ray_head
    run_dir = tmp_path / "run"
    config = tiny_pipeline_config(tmp_path, tiny_encoder_dir, run_dir)
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
         sys.executable, "-m", "cluster.pipeline", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-2000:]
    assert "succeeded" in submit.stdout.lower()
    assert "trained model (test)" in submit.stdout  # the job's own output, streamed back
    assert (run_dir / "model" / "model.safetensors").exists()
    check_outputs(run_dir)  # the uninterrupted pipeline's outputs (test_pipeline.py's crash test checks a resumed one)
