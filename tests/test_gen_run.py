"""End-to-end generation against the simulator over real HTTP: rows, resume, spend cap, worker kill, secrets."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from skillgen import run_generation
from skillgen.rundir.sinks import read_failures, read_rows
from skillgen.simulator.process import SimulatorProcess
from helpers.generation import assert_complete, esco, gen_config, ray_local, served_keys  # noqa: F401


SECRET = "sk-test-DO-NOT-LEAK-8f3a9c2e71b44d0f"


@pytest.fixture(scope="module")
def sim():
    os.environ["SKILLGEN_TEST_KEY"] = SECRET
    with SimulatorProcess(latency="fixed:0.05", seed=1, require_key=SECRET) as s:
        yield s


def test_end_to_end_then_rerun_spends_nothing(ray_local, sim, tmp_path: Path, capsys, caplog):
    caplog.set_level(logging.INFO)  # what the CLI logs; records go to pytest's handler, not to capsys: check them too
    csv = esco(tmp_path, 30)
    cfg = gen_config(sim.base_url, csv, tmp_path / "run", n_sentences=5)
    sim.reset_stats()
    summary = run_generation(cfg, progress=True)
    assert summary.status == "complete", summary
    assert summary.skills_completed == 30 and summary.rows_written == 150 and summary.skills_failed == 0
    raw = assert_complete(tmp_path / "run", 30, 5)
    stats = sim.stats()
    assert stats["served"] == summary.requests == 30
    assert max(served_keys(stats).values()) == 1
    # schema and bookkeeping
    assert set(raw.columns) >= {"skill_id", "label", "sentence", "sample_idx", "request_key", "model", "prompt_version",
                                "prompt_tokens", "completion_tokens", "cost_usd", "created_at"}
    assert raw["prompt_version"].unique().to_list() == ["v1"]
    assert raw.unique("request_key")["prompt_tokens"].sum() == stats["prompt_tokens_billed"]
    # estimate of prompt tokens vs billed
    assert abs(summary.estimated_prompt_tokens - stats["prompt_tokens_billed"]) <= 0.01 * stats["prompt_tokens_billed"]
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["fingerprint"] == cfg.fingerprint() and meta["config"]["model"] == "simulator"
    # the request ledger: one 200 per request, its tokens the simulator's billed tokens
    assert summary.ledger.by_outcome == {"200": 30}
    assert summary.ledger.prompt_tokens == stats["prompt_tokens_billed"]
    assert summary.ledger.completion_tokens == stats["completion_tokens_billed"]

    sim.reset_stats()
    again = run_generation(cfg, progress=False)
    assert again.skills_already_done == 30 and again.requests == 0
    assert sim.stats()["received"] == 0
    assert_complete(tmp_path / "run", 30, 5)

    from skillgen.commands.status import status

    info = status(tmp_path / "run")
    assert info.skills_complete == 30 and info.sentences == 150 and info.skills_failed == 0
    rec = info.reconciliation
    assert rec.ledger.attempts == 30 and rec.invocations == 2
    assert rec.rows_and_failures_usd == pytest.approx(rec.ledger.known_usd)  # nothing paid is missing from rows

    # the API key never reaches output, logs or metadata
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err + caplog.text
    # the logs were really captured (by logger name: Ray may reformat the handler's text)
    assert any(r.name.startswith("skillgen") for r in caplog.records)
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in repr(cfg) and SECRET not in cfg.model_dump_json()


def test_partial_rows_resume_only_missing(ray_local, sim, tmp_path: Path):
    """A skill with 3 of 5 rows on disk is asked for exactly the 2 missing sample_idx."""
    from skillgen.rundir.runstate import request_key
    from skillgen.rundir.sinks import Row, utcnow

    csv = esco(tmp_path, 4)
    cfg = gen_config(sim.base_url, csv, tmp_path / "run", n_sentences=5)
    from skillgen.plan import selected_skills
    from skillgen.rundir.rundir import RunDir

    skill = selected_skills(cfg)[0]
    key = request_key(cfg, skill.skill_id)
    with RunDir.open(cfg) as run_dir:
        w = run_dir.row_writer()
        w.add([Row(skill.skill_id, skill.label, f"Kept sentence {i} about the job.", i, key, "simulator", "v1", 1, 1,
                   0.0, utcnow()) for i in (0, 2, 4)])
        w.flush()
    sim.reset_stats()
    summary = run_generation(cfg, progress=False)
    assert summary.status == "complete" and summary.rows_written == 3 * 5 + 2
    rows = assert_complete(tmp_path / "run", 4, 5)
    mine = rows.filter(rows["request_key"] == key).sort("sample_idx")
    assert mine["sentence"][0] == "Kept sentence 0 about the job."
    assert sorted(mine["sample_idx"].to_list()) == [0, 1, 2, 3, 4]
    assert key not in served_keys(sim.stats())  # only the sub-request for the missing two was sent
    assert sim.stats()["served"] == 4


def test_spend_cap_stops_then_higher_cap_finishes(ray_local, sim, tmp_path: Path):
    csv = esco(tmp_path, 40)
    # $1000/1M tokens makes each request cost around $0.5; cap at $6 stops after ~10 skills
    cfg = gen_config(sim.base_url, csv, tmp_path / "run", price_input_per_1m=1000.0, price_output_per_1m=1000.0,
                     spend_cap_usd=6.0, max_tokens=300, adaptive_max_tokens=False)
    summary = run_generation(cfg, progress=False)
    assert summary.status == "stopped: spend cap", summary
    assert summary.total_cost_usd <= 6.0 + 1e-9
    assert 0 < summary.skills_completed < 40
    per_request = summary.actual_cost_usd / max(1, summary.requests)
    worst = (summary.prompt_tokens / summary.requests + 300) * 1000 / 1e6
    assert summary.total_cost_usd >= 6.0 - worst * 2 * 8, "stopped far below the cap"  # within an in-flight window
    rows = read_rows(tmp_path / "run")
    spent = float(rows["cost_usd"].sum()) + float(read_failures(tmp_path / "run", active_only=False)["cost_usd"].sum() or 0)
    assert spent == pytest.approx(summary.total_cost_usd, rel=1e-6)
    more = run_generation(cfg.model_copy(update={"spend_cap_usd": 1000.0}), progress=False)
    assert more.status == "complete"
    assert more.skills_already_done == summary.skills_completed
    assert_complete(tmp_path / "run", 40, 5)
    assert per_request > 0


@pytest.mark.slow  # ~11 s; .ci/run runs it (the default suite stays under 6 min)
def test_killed_worker_actor_work_is_reassigned(ray_local, tmp_path: Path):
    import ray

    csv = esco(tmp_path, 60)
    # answers take 0.5-2.5 s, so when the first one is served most skills are still in flight
    with SimulatorProcess(latency="uniform:0.5,2.5", seed=3, rpm=900) as s:
        cfg = gen_config(s.base_url, csv, tmp_path / "run", chunk_size=4)
        killed, finished = threading.Event(), threading.Event()

        def killer():
            from skillgen.online.driver import WORKER_NAME_PREFIX

            deadline = time.monotonic() + 60
            # stop with the run: a Ray call after the test's Ray is shut down would take pytest with it
            while time.monotonic() < deadline and not finished.is_set():
                time.sleep(0.1)
                if s.stats()["served"] == 0:
                    continue
                names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                         if a["name"].startswith(WORKER_NAME_PREFIX)]
                if names:
                    ray.kill(ray.get_actor(sorted(names)[0]), no_restart=False)  # same job namespace
                    killed.set()
                    return

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        try:
            summary = run_generation(cfg, progress=False)
        finally:
            finished.set()
            t.join(5)
        assert killed.is_set()
        assert summary.status == "complete", summary
        assert_complete(tmp_path / "run", 60, 5)


def test_prometheus_scrape_shows_the_skillgen_gauges_during_and_after_a_run(ray_local, sim, tmp_path: Path):
    """Ray's metrics endpoint, scraped like Prometheus does, carries every skillgen_* gauge with the run's numbers."""
    from helpers.promscrape import Scraper, exported, finite, metrics_url, wait_for_value

    from skillgen.common.raymetrics import GAUGES
    from skillgen.simulator import SimulatorConfig, run_in_thread

    n_skills = 24
    run_dir = tmp_path / "run_metrics"
    url = metrics_url()
    tag = {"run": run_dir.name}
    # 12 rounds of 2 requests at 0.25 s each: the run lasts 3 s or more on any machine, so pushes land during it
    with run_in_thread(SimulatorConfig(latency="fixed:0.25", seed=5)) as slow_sim:
        cfg = gen_config(slow_sim.base_url, esco(tmp_path, n_skills), run_dir, n_sentences=2, workers=1,
                         max_active_per_worker=2, price_input_per_1m=0.15, price_output_per_1m=0.6)  # priced: spend > 0
        with Scraper(url, (exported("skillgen_"),)) as scraper:
            summary = run_generation(cfg, progress=False)
            ended = time.monotonic()
    assert summary.status == "complete" and summary.skills_completed == n_skills, summary

    during = [s for s in scraper.series(exported("skillgen_skills_done"), **tag) if s.t < ended]
    assert during, f"no skillgen_skills_done in {scraper.scrapes} scrapes during the run ({scraper.errors[:2]})"
    values = [s.value for s in during]
    assert values == sorted(values) and 0 <= values[0] and values[-1] <= n_skills  # one series, never going back

    def final(name: str, check=finite) -> float:
        return wait_for_value(url, exported(name), tag, check)

    # after the run the gauges hold its totals (published once more at the end, whatever the tick)
    assert final("skillgen_skills_done", lambda v: v == n_skills) == n_skills
    assert final("skillgen_requests", lambda v: v == summary.requests) == summary.requests
    assert final("skillgen_spend_usd", lambda v: abs(v - summary.total_cost_usd) <= 1e-9 + 1e-6 * v) > 0
    values = {name: final(name) for name in GAUGES  # every online one is exported (batch mode's: the next test)
              if name.startswith("skillgen_") and not name.startswith("skillgen_batch")}
    assert values["skillgen_failures"] == 0
    assert 0 <= values["skillgen_retries"] <= summary.requests
    assert 0 <= values["skillgen_rate_limited"] <= summary.requests
    assert values["skillgen_tokens_per_s"] > 0


def test_batch_mode_publishes_batches_open_lines_done_and_spend(ray_local, tmp_path: Path):
    """Batch mode's own gauges: batches open while the provider works, every line done and the run dir's
    spend (the ledger's) at the end, next to the skills done, as Prometheus scrapes them."""
    from helpers.promscrape import Scraper, exported, metrics_url, wait_for_value

    from skillgen.simulator import run_in_thread

    n_skills = 40
    run_dir = tmp_path / "run_batch_metrics"
    url = metrics_url()
    tag = {"run": run_dir.name}
    # 4 batches of 10 lines, processed side by side at 0.3 s a line: 3 s or more of open batches against
    # Ray's 1 s push, so scrapes land while they are open
    with run_in_thread(batch_seconds_per_line=0.3, seed=3) as sim:
        cfg = gen_config(sim.base_url, esco(tmp_path, n_skills), run_dir, mode="batch", model="gpt-4o-mini",
                         n_sentences=2, batch_max_requests=10, batch_poll_min_s=0.05, batch_poll_max_s=0.3)
        with Scraper(url, (exported("skillgen_"),)) as scraper:
            summary = run_generation(cfg, progress=False)
            ended = time.monotonic()
    assert summary.status == "complete" and summary.skills_completed == n_skills, summary

    open_during = [s.value for s in scraper.series(exported("skillgen_batches_open"), **tag) if s.t < ended]
    assert open_during and max(open_during) >= 1, f"no open batch seen in {scraper.scrapes} scrapes ({scraper.errors[:2]})"
    lines = wait_for_value(url, exported("skillgen_batch_lines"), tag, lambda v: v == summary.requests)
    assert lines >= n_skills
    done_during = [s.value for s in scraper.series(exported("skillgen_batch_lines_done"), **tag) if s.t < ended]
    assert done_during == sorted(done_during) and all(0 <= v <= lines for v in done_during)  # never back, never over
    assert wait_for_value(url, exported("skillgen_batch_lines_done"), tag, lambda v: v == lines) == lines
    assert wait_for_value(url, exported("skillgen_batches_open"), tag, lambda v: v == 0) == 0
    assert wait_for_value(url, exported("skillgen_skills_done"), tag, lambda v: v == n_skills) == n_skills
    spend = wait_for_value(url, exported("skillgen_spend_usd"), tag,
                           lambda v: abs(v - summary.total_cost_usd) <= 1e-9 + 1e-6 * v)
    assert spend > 0
