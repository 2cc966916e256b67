"""Pipeline stages keyed by their inputs: a stage's old outputs are reused only for the same inputs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from cluster.config import load_pipeline_config
from cluster.pipeline import FIT_DONE, STAGES, enter_stage, generation_output, train
from skillgen.rundir.sinks import ROW_SCHEMA, ROWS_DIR, write_parquet_atomic
from helpers.pipeline import tiny_pipeline_config


def test_changed_inputs_move_stale_outputs_aside_and_same_inputs_reuse(tmp_path: Path, tiny_encoder_dir: Path):
    run_dir = tmp_path / "run"
    config = load_pipeline_config(tiny_pipeline_config(tmp_path, tiny_encoder_dir, run_dir))
    write_parquet_atomic(pl.DataFrame(schema=ROW_SCHEMA), config.generation_dir / ROWS_DIR / "part-1.parquet")
    assert generation_output(config) == ["part-1.parquet"]
    tc = config.train_config()
    inputs = {"training": tc.model_dump(mode="json", exclude={"ray_address"}), "data": generation_output(config)}
    enter_stage(config, "training", inputs, [config.model_dir])
    config.model_dir.mkdir(parents=True)
    (config.model_dir / FIT_DONE).write_text(json.dumps({"best_step": 7}))

    assert train(config) == {"best_step": 7}  # same inputs: the finished model is reused

    # more generated data (e.g. more skills): the old model must not be returned
    write_parquet_atomic(pl.DataFrame(schema=ROW_SCHEMA), config.generation_dir / ROWS_DIR / "part-2.parquet")
    inputs["data"] = generation_output(config)
    enter_stage(config, "training", inputs, [config.model_dir])
    assert not (config.model_dir / FIT_DONE).exists()
    (stale,) = (run_dir / "stale").iterdir()
    assert json.loads((stale / "model" / FIT_DONE).read_text()) == {"best_step": 7}
    assert json.loads((run_dir / STAGES).read_text())["training"] != ""
