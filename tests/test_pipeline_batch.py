"""The cheap path end to end: the pipeline with ``mode = "batch"`` in its generation config, on an
``s3://`` run dir (SeaweedFS), through the Batch API of the in-process simulator, to its report."""

from __future__ import annotations

import json
import subprocess

import pytest

from skillgen.common.storage import resolve
from skillgen.rundir.ledger import ledger_totals
from skillgen.rundir.rundir import RunDir
from helpers.pipeline import N_SENTENCES, N_SKILLS, env, pipeline_cmd, tiny_pipeline_config


@pytest.mark.slow
def test_pipeline_in_batch_mode_on_s3_runs_to_its_report(tmp_path, tiny_encoder_dir, s3_bucket):
    run_dir = f"{s3_bucket}/pipeline"
    config = tiny_pipeline_config(tmp_path, tiny_encoder_dir, run_dir)  # type: ignore[arg-type]
    text = config.read_text().replace("[generation]\n", '[generation]\nmode = "batch"\nbatch_poll_min_s = 0.05\n'
                                                         "batch_poll_max_s = 0.5\n")
    config.write_text(text)
    out = subprocess.run(pipeline_cmd(config), cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trained model (test)" in out.stdout
    generation = RunDir.read_only(f"{run_dir}/generation")
    rows = generation.rows(dedupe=False)
    assert rows.height == N_SKILLS * N_SENTENCES and rows.select("skill_id", "sample_idx").n_unique() == rows.height
    totals = ledger_totals(generation.root)
    assert set(totals.by_outcome) == {"200"} and totals.pending_attempts == 0
    assert generation.batch_file("manifest.json").exists()
    assert (resolve(run_dir) / "report.md").exists()
    record = json.loads((resolve(run_dir) / "generation_runs.jsonl").read_text().splitlines()[-1])
    assert record["summary"]["budget"]["mode"] == "batch" and record["summary"]["status"] == "complete"
    assert not any(tmp_path.glob("s3*")), "a local folder was written instead of the bucket"
