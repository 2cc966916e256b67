"""The tiny pipeline config the pipeline, ray-job-submit, stage and two-node tests share."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import polars as pl
from helpers.card import check_card

from conftest import synthetic_skill_rows, write_benchmarks, write_esco_csv

N_SKILLS, N_SENTENCES = 24, 4
MAX_CONSOLE_LINE = 300  # issue 29: Ray Train's raw TrainingReport lines were ~700 characters


def pipeline_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "cluster.pipeline", "--config", str(config)]


def env() -> dict[str, str]:
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


def tiny_pipeline_config(tmp_path: Path, encoder_dir: Path, run_dir: Path) -> Path:
    rows = synthetic_skill_rows(N_SKILLS)
    esco = write_esco_csv(tmp_path / "skills.csv", rows)
    bench = write_benchmarks(tmp_path / "bench", [r[1] for r in rows[:6]])
    config = tmp_path / "pipeline.toml"
    config.write_text(f"""
run_dir = "{run_dir}"
esco = "{esco}"
benchmark_dir = "{bench}"
[simulator]
latency = "fixed:0.01"
[generation]
base_url = "simulator"
n_sentences = {N_SENTENCES}
workers = 1
[training]
workers = 2
batch_size = 4
epochs = 2
model = "{encoder_dir}"
max_seq_length = 32
eval_every = 3
log_every = 2
[evaluation]
sets = ["tech", "house"]
""")
    return config


def long_lines(output: str, limit: int = MAX_CONSOLE_LINE) -> list[str]:
    """Console lines longer than ``limit`` characters (colour codes counted)."""
    return [line for line in output.splitlines() if len(line) > limit]


def check_console(output: str) -> None:
    """The main job's console: its own progress lines, no Ray Train result dumps, nothing over 300 characters."""
    assert "[skilltrain] step" in output and "validation at step" in output and "stage 4/4: report" in output
    assert "TrainingReport(" not in output
    assert not long_lines(output), long_lines(output)[:3]


def generation_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "generation_runs.jsonl").read_text().splitlines()]


def check_outputs(run_dir: Path) -> None:
    rows = pl.read_parquet(run_dir / "generation" / "shards" / "*.parquet")
    assert rows.height == N_SKILLS * N_SENTENCES
    assert rows.select("skill_id", "sample_idx").n_unique() == rows.height
    results = json.loads((run_dir / "results_test.json").read_text())
    assert set(results) == {"tech", "house"} and results["tech"]["n"] == 6
    report = (run_dir / "report.md").read_text()
    assert report.count("![") == 6 and "## Data quality" in report and "| label_verbatim_% |" in report
    # the training plot's data: every step's loss and every validation, resumes included
    total = json.loads((run_dir / "model" / "fit_result.json").read_text())["history"][-1]["step"]
    curve = json.loads((run_dir / "report_training.json").read_text())
    assert curve["loss_steps"] == list(range(1, total + 1)) and len(curve["loss_smoothed"]) == total
    assert curve["val_steps"] == sorted(set(range(3, total + 1, 3)) | {total})
    assert "No cost (simulator / self-hosted)." in report
    # the model card, rewritten by the pipeline: the zero-shot baseline and the data report next to the test scores
    card = check_card(run_dir / "model", baseline=json.loads((run_dir / "baseline_test.json").read_text()))
    assert "Generator model: `simulator`" in card and "| label_verbatim_% |" in card
    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(run_dir / "model")).encode(["weld pipes"]).shape == (1, 32)
