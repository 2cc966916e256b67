"""The tiny pipeline config the pipeline, ray-job-submit, stage and two-node tests share."""

from __future__ import annotations

from pathlib import Path

from conftest import synthetic_skill_rows, write_benchmarks, write_esco_csv

N_SKILLS, N_SENTENCES = 24, 4


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
