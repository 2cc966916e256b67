"""Training speed on CPU: samples/s and model FLOP utilisation through ``skilltrain.training.fit``,
against a plain sentence-transformers-style loop, and validation cost per call.

* ``sweep``: samples/s and MFU at several global batches, 2 workers, GradCache, through
  ``fit`` (the trainer's code path; rates from the workers' clock, first step excluded);
  also ``fit``'s time by phase (Ray start, worker group + training, final eval, export);
* ``compare``: on the same generated pairs without augmentation, back to back: the plain
  loop (tokenise, forward, in-batch symmetric loss, backward, AdamW; all cores' torch threads)
  at batch 64, ``fit --workers 2 --batch-size 32``, ``fit --workers 1 --batch-size 64``;
* ``validation``: one validation call's cost, rank 0 encoding all 13,896 labels alone with one
  thread (the old way) against 2 ranks sharing the labels (the new way), and the scores' equality.

Every result line carries the load average at its start and end (other jobs share the box).

    .venv/bin/python benchmarks/bench_train_speed.py compare --steps 12
    .venv/bin/python benchmarks/bench_train_speed.py sweep --global-batches 64,256,1024,4096 --steps 3 --chunk 64
    .venv/bin/python benchmarks/bench_train_speed.py validation
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_training import append_jsonl, synthetic_run_dir  # noqa: E402

from skilltrain.config import TrainConfig  # noqa: E402


def load() -> float:
    return round(os.getloadavg()[0], 1)


def fit_once(tmp: Path, tag: str, workers: int, global_batch: int, steps: int, chunk: int, augment: float, data: Path) -> dict:
    from skilltrain.training.fit import fit

    load0 = load()
    cfg = TrainConfig(
        data=data, out=tmp / f"model-{tag}", workers=workers, batch_size=global_batch // workers, gradcache_chunk=chunk,
        max_steps=steps, eval_every=10**9, log_every=1, val_sets=[], storage_path=tmp / "ray", name=f"bench-{tag}",
        augment_prob=augment,
    )
    t0 = time.perf_counter()
    result = fit(cfg)
    m = result.extra["last_metrics"]
    return {
        "what": f"fit {workers} worker(s) x {global_batch // workers}", "global_batch": global_batch, "gradcache_chunk": chunk,
        "steps": steps, "samples_per_s": round(m["samples_per_s"], 2), "mfu": round(m["mfu"], 4),
        "model_tflops": round(m["model_tflops"], 4), "input_wait_share": round(m["input_wait_share"], 3),
        "peak_mem_mb_per_worker": round(m["peak_mem_mb"], 1), "phase_s": result.extra["phase_s"],
        "worker_setup_s": round(m["setup_s"], 1), "steps_s": round(m["steps_s"], 1),
        "wall_s": round(time.perf_counter() - t0, 1), "load_start": load0, "load_end": load(),
    }


def plain_loop(data: Path, batch: int, steps: int, threads: int) -> dict:
    """The loop a sentence-transformers user writes (MNRL, symmetric), on the same pairs in the same order of skills."""
    import polars as pl
    from transformers import AutoModel, AutoTokenizer

    from skilltrain.model import default_model_dir, mean_pool

    load0 = load()
    torch.set_num_threads(threads)
    pairs = pl.read_parquet(data / "shards" / "part-00000.parquet").unique("label", keep="first", maintain_order=True)
    sentences, labels = pairs["sentence"].to_list(), pairs["label"].to_list()
    tok = AutoTokenizer.from_pretrained(str(default_model_dir()))
    model = AutoModel.from_pretrained(str(default_model_dir())).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)

    def embed(texts):
        f = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        return F.normalize(mean_pool(model(**f).last_hidden_state, f["attention_mask"]), dim=-1)

    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        rows = slice(step * batch, (step + 1) * batch)
        scores = 20.0 * embed(sentences[rows]) @ embed(labels[rows]).T
        target = torch.arange(batch)
        loss = (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target)) / 2
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return {"what": f"plain loop, {threads} threads, batch {batch}", "global_batch": batch, "steps": steps,
            "samples_per_s": round(batch * (steps - 1) / sum(times[1:]), 2), "load_start": load0, "load_end": load()}


def compare(args, tmp: Path) -> list[dict]:
    data = synthetic_run_dir(tmp / "data", n_skills=max(64 * args.steps, 256), per_skill=1)
    out = [plain_loop(data, 64, args.steps, os.cpu_count() or 2)]
    print(json.dumps(out[-1]), flush=True)
    for workers in (2, 1):
        out.append(fit_once(tmp, f"cmp-w{workers}", workers, 64, args.steps, 0, 0.0, data))
        print(json.dumps(out[-1]), flush=True)
    return out


def sweep(args, tmp: Path) -> list[dict]:
    out = []
    for g in [int(x) for x in args.global_batches.split(",")]:
        data = synthetic_run_dir(tmp / f"data-{g}", n_skills=max(2 * g, 256))
        out.append(fit_once(tmp, f"sweep-{g}", 2, g, args.steps, args.chunk, 1.0, data))
        print(json.dumps(out[-1]), flush=True)
    return out


def _validation_rank(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from skillgen.common.taxonomy import load_skills
    from skilltrain.evaluation.evaluate import load_benchmarks
    from skilltrain.model import BiEncoder
    from skilltrain.training.train import TrainData, validate
    from skilltrain.training.validation import validation_index

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # a 1-CPU worker, as each of 2 workers on a 2-core box
    dist.init_process_group("gloo", rank=rank, world_size=world)
    skills = load_skills(None)
    data = TrainData([], [], np.zeros(0), np.zeros(0), val_skills=skills, val_benchmarks=load_benchmarks(skills, ["tech", "house"], "validation"))
    encoder = BiEncoder.from_pretrained()
    result = {}
    if rank == 0:  # before: rank 0 alone builds the index (the other rank waits)
        t0 = time.perf_counter()
        result["old"] = validate(encoder, data)
        result["old_s"] = time.perf_counter() - t0
    dist.barrier()
    t0 = time.perf_counter()
    index = validation_index(encoder, skills)
    scores = validate(encoder, data, index) if rank == 0 else None
    dist.barrier()
    if rank == 0:
        result.update(new=scores, new_s=time.perf_counter() - t0)
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def validation(args, tmp: Path) -> list[dict]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    load0 = load()
    mp.spawn(_validation_rank, args=(2, port, str(tmp / "val.json")), nprocs=2, join=True)
    r = json.loads((tmp / "val.json").read_text())
    row = {"what": "validation call (13,896 labels + TECH/HOUSE validation), 2 ranks x 1 thread",
           "rank0_alone_s": round(r["old_s"], 1), "shared_s": round(r["new_s"], 1), "ratio": round(r["old_s"] / r["new_s"], 2),
           "scores_equal": r["old"] == r["new"], "val_rp5": r["new"]["val_rp5"], "load_start": load0, "load_end": load()}
    print(json.dumps(row), flush=True)
    return [row]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("what", choices=["sweep", "compare", "validation"])
    p.add_argument("--global-batches", default="64,256,1024,4096")
    p.add_argument("--steps", type=int, default=3, help="steps per fit (the first is not timed)")
    p.add_argument("--chunk", type=int, default=64, help="sweep: GradCache chunk")
    p.add_argument("--json", type=Path, default=None, help="append results as JSON lines")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.what != "validation":
            import ray

            ray.init(address="local", log_to_driver=False)  # never attach to a colleague's cluster
        results = {"sweep": sweep, "compare": compare, "validation": validation}[args.what](args, Path(tmp))
    append_jsonl(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
