"""The main job end to end on a tiny slice: local Ray, the in-process simulator, the tiny
encoder, 2 Ray Train workers; then a crash in the middle of training and a rerun that
finishes without paying for any generation request again.

The default suite runs the crash-and-rerun test (the pipeline to its report, resumed) and, in
``test_ray_job_submit.py``, one uninterrupted pipeline with the same output checks; the uninterrupted
run followed by a rerun of the finished pipeline is slow (CI runs it, ``.ci/run``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers.pipeline import N_SKILLS, check_console, check_outputs, env, generation_records, pipeline_cmd, tiny_pipeline_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_pipeline_runs_end_to_end_and_a_rerun_pays_nothing(tmp_path, tiny_encoder_dir):
    run_dir = tmp_path / "run"
    config = tiny_pipeline_config(tmp_path, tiny_encoder_dir, run_dir)
    first = subprocess.run(pipeline_cmd(config) + ["--json"], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    # --json: stdout is the summary alone (Ray's forwarded worker lines and the estimate go to stderr)
    assert json.loads(first.stdout)["paths"]["report"] == str(run_dir / "report.md")
    assert "[skilltrain]" in first.stderr
    check_console(first.stdout + first.stderr)
    check_outputs(run_dir)

    again = subprocess.run(pipeline_cmd(config), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained model (test)" in again.stdout and str(run_dir / "report.md") in again.stdout
    records = generation_records(run_dir)
    assert [r["summary"]["requests"] for r in records][1] == 0
    assert records[1]["summary"]["skills_already_done"] == N_SKILLS


@pytest.mark.slow  # ~70 s: a pipeline killed mid-training, then its rerun; .ci/run runs it
def test_killed_during_training_resumes_without_new_generation_requests(tmp_path, tiny_encoder_dir):
    run_dir = tmp_path / "run"
    config = tiny_pipeline_config(tmp_path, tiny_encoder_dir, run_dir)
    proc = subprocess.Popen(pipeline_cmd(config), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        # Ray Train records a reported checkpoint in its manager snapshot; kill once that exists
        snapshot = run_dir / "train" / "skilltrain" / "checkpoint_manager_snapshot.json"
        while time.monotonic() < deadline and proc.poll() is None:
            if snapshot.exists() and '"checkpoint_results": []' not in snapshot.read_text():
                break
            time.sleep(0.5)
        assert proc.poll() is None, "pipeline finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: driver, Ray and train workers all at once
        proc.wait(timeout=30)
    assert not (run_dir / "model" / "fit_result.json").exists()
    paid = generation_records(run_dir)[0]["summary"]["requests"]
    assert paid >= N_SKILLS

    rerun = subprocess.run(pipeline_cmd(config), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "trained model (test)" in rerun.stdout and str(run_dir / "report.md") in rerun.stdout
    check_console(rerun.stdout + rerun.stderr)
    records = generation_records(run_dir)
    assert records[1]["summary"]["requests"] == 0 and records[1]["summary"]["skills_already_done"] == N_SKILLS
    fit = json.loads((run_dir / "model" / "fit_result.json").read_text())
    assert fit["resumed_at_steps"], "training restarted from scratch instead of its checkpoint"
    check_outputs(run_dir)


def test_bad_pipeline_config_fails_with_one_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[generation]\nbase_url = "simulator"\nrpm = -5\n[training]\nbatch_size = 4\n')
    proc = subprocess.run(pipeline_cmd(config), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"pipeline: error: --config {config}: [generation] rpm: Input should be greater "
                                                "than 0 (got -5)"]
