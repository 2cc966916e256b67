"""Reproducible generation (issue 29): one config writes the same sentence into every (skill, sample) slot,
whatever the worker count, the arrival order, the resume point or the mode, against the simulator.

Each request carries ``seed`` = :func:`skillgen.llm.client.request_seed` (run seed, request key, slots asked
for); the simulator draws a request's sentences from its seed and prompt alone. The runs here differ in all
that may not matter: 1 vs 2 workers with random latency (another arrival order), a run stopped part-way by its
spend cap and resumed, and batch mode. A run with another seed is the control: it must differ.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.generation import esco, gen_config, ray_local  # noqa: F401
from skillgen.common.errors import UserError
from skillgen.rundir.sinks import read_rows
from skillgen import run_generation
from skillgen.simulator.process import SimulatorProcess

pytestmark = pytest.mark.slow  # five generation runs: ~40 s on the loaded 2-core box (.ci/run runs it)

N_SKILLS, N = 30, 5
MODEL = "gpt-4o-mini"  # a model with a Batch API price, so online and batch runs share request keys


@pytest.fixture(scope="module")
def sim():
    os.environ["SKILLGEN_TEST_KEY"] = "sk-test-reproducible"
    # latency spread over ~10x, so the order in which answers arrive differs from run to run
    with SimulatorProcess(latency="lognormal:-3.5,0.8", seed=1) as s:
        yield s


def slots(run_dir: Path) -> dict[tuple[str, int], str]:
    rows = read_rows(run_dir)
    return {(skill, int(idx)): sentence for skill, idx, sentence in rows.select("skill_id", "sample_idx", "sentence").iter_rows()}


def test_the_same_config_writes_the_same_sentence_into_every_slot(ray_local, sim, tmp_path: Path):  # noqa: F811
    csv = esco(tmp_path, N_SKILLS)

    def config(name: str, seed: int = 7, **kw):
        return gen_config(sim.base_url, csv, tmp_path / name, model=MODEL, n_sentences=N, seed=seed, **kw)

    runs = {}
    for name, kw in {"workers_1": dict(workers=1), "workers_2": dict(workers=2, chunk_size=2)}.items():
        summary = run_generation(config(name, **kw), progress=False)
        assert summary.status == "complete" and summary.truncated == 0, summary
        runs[name] = slots(tmp_path / name)

    # stopped by its spend cap with requests in flight, then resumed with a higher cap
    capped = config("resumed", workers=2, price_input_per_1m=1000.0, price_output_per_1m=1000.0, spend_cap_usd=4.0)
    first = run_generation(capped, progress=False)
    assert first.status == "stopped: spend cap" and 0 < first.skills_completed < N_SKILLS, first
    rest = run_generation(capped.model_copy(update={"spend_cap_usd": 1000.0}), progress=False)
    assert rest.status == "complete" and rest.skills_already_done == first.skills_completed, rest
    runs["resumed"] = slots(tmp_path / "resumed")

    batch = run_generation(config("batch", mode="batch", batch_poll_min_s=0.05, batch_poll_max_s=0.3), progress=False)
    assert batch.status == "complete", batch
    runs["batch"] = slots(tmp_path / "batch")

    reference = runs["workers_1"]
    assert len(reference) == N_SKILLS * N
    for name, got in runs.items():
        differ = [slot for slot in reference if got.get(slot) != reference[slot]]
        assert not differ and got.keys() == reference.keys(), f"{name}: {len(differ)} slots differ, e.g. {differ[:2]}"

    other = run_generation(config("seed_8", seed=8), progress=False)
    assert other.status == "complete"
    same = sum(slots(tmp_path / "seed_8")[slot] == sentence for slot, sentence in reference.items())
    assert same < 0.2 * len(reference), f"another seed gave {same} of {len(reference)} identical slots"

    # one seed per run dir: another seed is refused in one line that names it
    with pytest.raises(UserError, match=r"seed 7 -> 8"):
        run_generation(config("workers_1", seed=8), progress=False)
