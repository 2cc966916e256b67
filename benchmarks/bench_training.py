"""Training benchmarks: data-parallel scaling and GradCache memory, through ``skilltrain.training.fit``.

* scaling: samples/s with 1 and 2 Ray Train workers at the same global batch
  (throughput from the workers' own clock, first step excluded, so Ray start-up
  does not count);
* memory: peak memory per worker (max over workers; RSS high-water mark on CPU,
  ``torch.cuda.max_memory_allocated`` on GPU) with GradCache at several global
  batch sizes. Each fit starts a fresh worker group, so each high-water mark is
  that configuration's own.

Inputs are a synthetic run dir (made-up skills, two sentences each) written to
a temp dir; validation is off so only training is timed.

    .venv/bin/python benchmarks/bench_training.py scaling --workers 1,2 --global-batch 32 --steps 6
    .venv/bin/python benchmarks/bench_training.py memory --global-batches 64,256,1024 --chunk 32 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polars as pl  # noqa: E402

from skilltrain.config import TrainConfig  # noqa: E402
from skilltrain.training.fit import fit  # noqa: E402

TOPICS = ["welding", "payroll", "kubernetes", "pastry", "forklift", "audit", "python", "nursing", "sales", "carpentry"]


def synthetic_run_dir(path: Path, n_skills: int, per_skill: int = 2) -> Path:
    rows = []
    for i in range(n_skills):
        topic = TOPICS[i % len(TOPICS)]
        label = f"{['operate', 'manage', 'teach', 'inspect', 'design'][i % 5]} {topic} systems {i}"
        for k in range(per_skill):
            rows.append({
                "skill_id": f"s{i}", "label": label, "sample_idx": k,
                "sentence": f"As part of our {topic} team (ref {i}-{k}) you will {label} for clients across the region, "
                            f"working with colleagues on day-to-day tasks and improving how we work.",
            })
    (path / "shards").mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text("{}")
    pl.DataFrame(rows).write_parquet(path / "shards" / "part-00000.parquet")
    return path


def append_jsonl(path: Path | None, rows: list[dict]) -> None:
    """Append result rows as JSON lines (no-op without a path)."""
    if path is None:
        return
    with open(path, "a") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


def run_one(tmp: Path, tag: str, workers: int, global_batch: int, steps: int, chunk: int, model: Path | None, gpu: bool) -> dict:
    data = synthetic_run_dir(tmp / f"data-{global_batch}", n_skills=max(2 * global_batch, 256))
    cfg = TrainConfig(
        data=data, out=tmp / f"model-{tag}", model=model, workers=workers, use_gpu=gpu,
        batch_size=global_batch // workers, gradcache_chunk=chunk, max_steps=steps, eval_every=10**9,
        log_every=1, val_sets=[], storage_path=tmp / "ray", name=f"bench-{tag}", augment_prob=1.0,
    )
    t0 = time.perf_counter()
    result = fit(cfg)
    m = result.extra["last_metrics"]
    return {
        "tag": tag, "workers": workers, "global_batch": global_batch, "gradcache_chunk": chunk, "steps": steps,
        "samples_per_s": round(m.get("samples_per_s", 0.0), 2), "peak_mem_mb_per_worker": round(m.get("peak_mem_mb", 0.0), 1),
        "mem_before_training_mb_rank0": round(m.get("mem_before_training_mb", 0.0), 1),
        "final_loss": round(m.get("loss", float("nan")), 4), "wall_s_incl_ray_start": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["scaling", "memory"])
    p.add_argument("--workers", default="1,2", help="scaling: worker counts")
    p.add_argument("--global-batch", type=int, default=32, help="scaling: global batch (same for every worker count)")
    p.add_argument("--global-batches", default="64,256,1024", help="memory: global batch sizes")
    p.add_argument("--memory-workers", type=int, default=2, help="memory: workers")
    p.add_argument("--chunk", type=int, default=32, help="memory: GradCache chunk")
    p.add_argument("--scaling-chunk", type=int, default=0, help="scaling: GradCache chunk (0 = off)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--model", type=Path, default=None, help="encoder dir (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="append results as JSON lines")
    args = p.parse_args()

    import ray

    ray.init(address="local", log_to_driver=False)  # never attach to a colleague's cluster
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "scaling":
            for w in [int(x) for x in args.workers.split(",")]:
                results.append(run_one(Path(tmp), f"scale-w{w}", w, args.global_batch, args.steps, args.scaling_chunk, args.model, args.gpu))
                print(json.dumps(results[-1]), flush=True)
        else:
            for g in [int(x) for x in args.global_batches.split(",")]:
                results.append(run_one(Path(tmp), f"mem-g{g}", args.memory_workers, g, args.steps, args.chunk, args.model, args.gpu))
                print(json.dumps(results[-1]), flush=True)
    append_jsonl(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
