"""Under injected 429s, 5xx, hangs, drops and malformed content the run completes and accounts for everything."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from skillgen.batch.state import load_manifest
from skillgen.commands.status import status
from skillgen import run_generation
from skillgen.rundir.ledger import BATCH_WORKER, ledger_totals, read_ledger
from skillgen.rundir.rundir import RunDir
from skillgen.rundir.sinks import read_failures, read_rows
from skillgen.simulator import run_in_thread
from skillgen.simulator.process import SimulatorProcess
from helpers.generation import LeaseWatcher, assert_billed_once, assert_complete, esco, gen_config, ray_local, served_keys  # noqa: F401


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


@pytest.mark.slow  # ~12 s; .ci/run runs it (the default suite stays under 6 min)
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


@pytest.mark.slow  # ~13 s; .ci/run runs it (the default suite stays under 6 min)
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


def test_batch_shortfall_goes_online_under_the_same_lease_and_nothing_is_paid_twice(ray_local, tmp_path: Path):
    """``--batch-shortfall online``: what the one batch left missing (per-line 500s, malformed bodies) is generated
    online by the same invocation under the same lease; only those keys go online, each billed line and answer is
    in the ledger once, and the ledger's tokens and dollars are what the simulator billed in both modes."""
    run_dir, n_skills = tmp_path / "run", 24
    # the simulator draws the same faults for batch lines and online requests: online retries and re-requests
    with run_in_thread(latency="fixed:0.02", fault_rates="500=0.25,malformed=0.25", seed=4,
                       batch_seconds_per_line=0.005) as sim:
        cfg = gen_config(sim.base_url, esco(tmp_path, n_skills), run_dir, mode="batch", batch_shortfall="online",
                         model="gpt-4o-mini", batch_poll_min_s=0.05, batch_poll_max_s=0.3, max_attempts=10,
                         max_content_attempts=10)
        with LeaseWatcher(run_dir) as lease:
            summary = run_generation(cfg, progress=False, on_update=lease.on_update)
        stats = sim.stats()
    assert summary.status == "complete", summary
    assert_complete(run_dir, n_skills, 5)
    assert read_failures(run_dir).height == 0

    # one lease from the batch phase to the online ticks: never released and taken again in between
    assert lease.at_online_ticks, "online mode never ran"
    assert lease.held_during_batch() == lease.holders() == lease.at_online_ticks and len(lease.holders()) == 1

    # one batch, no follow-up batch: its shortfall (both kinds) went online, and nothing else did
    manifest = load_manifest(RunDir.read_only(run_dir))
    assert len(manifest.entries) == 1 and manifest.entries[0].collected
    problems = manifest.problems
    assert any(p.startswith("HTTP 500") for p in problems.values()), problems
    assert any(not p.startswith("HTTP") for p in problems.values()), problems  # answered, but not valid
    ledger = read_ledger(run_dir)
    online = ledger.filter(ledger["worker"] != BATCH_WORKER)
    # online follow-ups of a partly answered skill carry "<key>:<attempt>:<missing>"
    assert {key.split(":")[0] for key in online["request_key"].to_list()} == set(problems)
    assert ledger.filter(ledger["worker"] == BATCH_WORKER).height == n_skills

    # paid once: each batch line billed once; each online answer the server gave is a 200 in the ledger
    assert_billed_once(stats)
    assert served_keys(stats) == dict(Counter(online.filter(online["outcome"] == "200")["request_key"].to_list()))
    totals = ledger_totals(run_dir)
    assert totals.pending_attempts == 0 and totals.unknown_attempts == 0
    billed = sum(stats[k] for k in ("batch_prompt_tokens_billed", "batch_completion_tokens_billed",
                                    "prompt_tokens_billed", "completion_tokens_billed"))
    assert abs(totals.prompt_tokens + totals.completion_tokens - billed) <= 0.005 * billed
    batch_usd = float(ledger.filter(ledger["worker"] == BATCH_WORKER)["cost_usd"].fill_null(0).sum())
    assert batch_usd == pytest.approx(stats["batch_cost_usd"], rel=1e-6)
    assert status(run_dir).cost_usd == pytest.approx(totals.spent_usd, rel=1e-9)
