"""benchmarks/bench_training_gpu.py end to end in --smoke mode (CPU, tiny): every part runs, no Ray/Polars.

The GPU machine has neither Ray nor Polars, so the run mode must not import them;
the script records what it imported and this test holds it to that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import synthetic_skill_rows

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_training_gpu.py"
PARTS = ["checks", "zero_shot", "sweep", "pool", "average", "hardneg"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_encoder_dir) -> Path:
    sys.path.insert(0, str(SCRIPT.parent))
    from bench_training_gpu import write_inputs

    from skilltrain.model import BiEncoder

    rows = synthetic_skill_rows(24)
    labels = [r[1] for r in rows]
    pairs = {"sentence": [], "label": [], "cls": [], "generated": []}
    for c, label in enumerate(labels):
        for k in range(3):
            pairs["sentence"].append(f"In this role you {label} with care ({k}).")
            pairs["label"].append(label)
            pairs["cls"].append(c)
            pairs["generated"].append(k < 2)
    gold = {name: {split: [{"sentence": f"we need someone to {lab}", "gold": [lab]} for lab in labels[::3]]
                   for split in ("validation", "test")} for name in ("tech", "house")}
    skills = {"label": labels, "alt_labels": [r[2].split("\n") for r in rows]}
    out = tmp_path_factory.mktemp("gpu_bench") / "in"
    manifest = write_inputs(out, pairs, skills, gold, BiEncoder.from_pretrained(tiny_encoder_dir))
    assert manifest["pairs"] == 72 and (out / "model" / "model.safetensors").exists()
    return out


def run_script(indir: Path, out: Path, *extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--run", str(indir), "--out", str(out), "--smoke", *extra],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow  # ~55 s on a loaded 2-core box (BENCHMARKS.md "Slow tests")
def test_smoke_runs_every_part_without_ray_or_polars(prepared, tmp_path):
    results = run_script(prepared, tmp_path / "out")
    assert "errors" not in results, results.get("errors")
    assert results["skipped"] == {} and list(results["parts"]) == PARTS
    assert results["imported_ray"] is False and results["imported_polars"] is False
    checks = results["parts"]["checks"]
    assert checks["backend"] == "gloo" and checks["world_size"] == 1 and checks["gather_is_collective"]
    assert checks["loss_dtype"] == checks["loss_input_dtype"] == "torch.float32" and checks["grad_dtypes"] == ["torch.float32"]
    assert checks["param_dtypes"] == ["torch.float32"]  # fp16 on disk, fp32 master weights
    assert {"tech_validation", "tech_test", "house_validation", "house_test"} <= set(results["parts"]["zero_shot"])
    assert all(r["samples_per_s"] > 0 for r in results["parts"]["sweep"].values())
    pool = results["parts"]["pool"]
    assert set(pool["runs"]) == {"4", "8", "16"} and pool["best_batch"] in (4, 8, 16)
    for batch, run in pool["runs"].items():
        assert pool["pairs"] - 2 * int(batch) <= run["pairs_seen"] <= pool["pairs"]  # the same pairs at every size
        assert "ci95" in run["scores"]["tech_test"]
    assert results["parts"]["average"]["alpha"] in (0.5, 1.0)
    assert results["parts"]["hardneg"]["hard_negatives"] == 1
    assert "pool batch 16" in (tmp_path / "out" / "log.txt").read_text()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--plot", str(tmp_path / "out" / "results.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "pool_rp5.png").stat().st_size > 1000


def test_spent_time_budget_skips_every_part_cleanly(prepared, tmp_path):
    results = run_script(prepared, tmp_path / "out", "--time-budget-s", "0")
    assert results["parts"] == {} and set(results["skipped"]) == set(PARTS)
    assert results["env"]["backend"] == "gloo" and results["env"]["pairs"] == 72
    assert results["imported_ray"] is False and results["imported_polars"] is False
