"""Under injected 429s, 5xx, hangs, drops and malformed content the run completes and accounts for everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from skillgen.run import run_generation
from skillgen.rundir.sinks import read_failures, read_rows
from test_gen_helpers import esco, gen_config, ray_local  # noqa: F401

SimulatorProcess = pytest.importorskip("skillgen.simulator.process").SimulatorProcess


def test_transient_faults_and_bad_content(ray_local, tmp_path: Path):
    csv = esco(tmp_path, 40)
    rates = "429=0.08,500=0.05,503=0.03,hang=0.03,drop=0.03,malformed=0.06,wrong_count=0.06,empty=0.03"
    with SimulatorProcess(latency="fixed:0.05", seed=7, fault_rates=rates, hang_seconds=30, rpm=3000, tpm=2_000_000) as sim:
        cfg = gen_config(sim.base_url, csv, tmp_path / "run", request_timeout_s=1.5, max_attempts=10)
        summary = run_generation(cfg, progress=False)
        stats = sim.stats()
    rows = read_rows(tmp_path / "run", dedupe=False)
    fails = read_failures(tmp_path / "run")
    # requested = generated + failed, in skills and in sentences; nothing duplicated
    assert rows.select(["skill_id", "sample_idx"]).is_duplicated().sum() == 0
    complete = rows.group_by("skill_id").len().filter(rows.group_by("skill_id").len()["len"] == 5).height
    assert complete + fails.height == 40, (complete, fails.to_dicts())
    assert rows.height + int(fails["n_missing"].sum() or 0) == 40 * 5
    assert summary.status == "complete", summary
    assert summary.retries > 0 and stats["failed"].get("hang", 0) > 0 and stats["failed"].get("drop", 0) > 0
    assert stats["degraded"], "content faults were injected and handled"
    assert fails.height <= 2  # transient faults are retried, not turned into failures


def test_non_retryable_errors_become_failure_records(ray_local, tmp_path: Path):
    csv = esco(tmp_path, 20)
    with SimulatorProcess(latency="fixed:0.02", seed=11, fault_rates="context_length=0.25") as sim:
        cfg = gen_config(sim.base_url, csv, tmp_path / "run")
        summary = run_generation(cfg, progress=False)
        stats = sim.stats()
    fails = read_failures(tmp_path / "run")
    rows = read_rows(tmp_path / "run")
    assert fails.height == stats["failed"]["context_length"] > 0
    assert set(fails["error_class"]) == {"context_length_exceeded"}
    assert (fails["attempts"] == 1).all()  # no retry for a 400
    assert all("400" in m for m in fails["message"])
    assert rows.height == (20 - fails.height) * 5
    assert summary.skills_failed == fails.height and summary.status == "complete"

    # a rerun skips recorded failures; --retry-failures retries them
    with SimulatorProcess(latency="fixed:0.02", seed=12) as sim:
        again = run_generation(cfg.model_copy(update={"base_url": sim.base_url}), progress=False)
        assert again.requests == 0
        retried = run_generation(cfg.model_copy(update={"base_url": sim.base_url, "retry_failures": True}), progress=False)
        assert retried.skills_completed == fails.height
    assert read_rows(tmp_path / "run").height == 100 and read_failures(tmp_path / "run").height == 0


def test_insufficient_quota_stops_the_run(ray_local, tmp_path: Path):
    csv = esco(tmp_path, 30)
    with SimulatorProcess(latency="fixed:0.2", seed=5, fault_rates="insufficient_quota=1.0") as sim:
        cfg = gen_config(sim.base_url, csv, tmp_path / "run", chunk_size=2)
        summary = run_generation(cfg, progress=False)
    fails = read_failures(tmp_path / "run")
    assert summary.status.startswith("stopped: insufficient_quota"), summary.status
    assert set(fails["error_class"]) == {"insufficient_quota"}
    assert summary.skills_remaining > 0  # the rest were not burned into failure records

    # once the account is topped up, a plain rerun (no --retry-failures) finishes every skill:
    # a quota failure is about the account, not the skill, so it is not a reason to skip it
    with SimulatorProcess(latency="fixed:0.02", seed=6) as sim:
        again = run_generation(cfg.model_copy(update={"base_url": sim.base_url}), progress=False)
    assert again.status == "complete", again.status
    rows = read_rows(tmp_path / "run")
    assert rows.height == 30 * 5 and rows.select("skill_id", "sample_idx").n_unique() == rows.height
    assert read_failures(tmp_path / "run").height == 0
