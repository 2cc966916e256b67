"""Run dir on S3 vs local disk: what object storage costs a generation run (same workload, same process).

One Ray instance and one simulator (no latency, no limits, so storage is a visible share of
the time) serve every run; runs alternate local / S3 (``--repeats`` pairs) so machine load
hits both alike. S3 is a SeaweedFS server on loopback (tests/helpers/s3server.py), so the numbers are
the client-side cost of the object-store protocol (HTTP, signing, no rename), not a WAN's latency.
Per run it reports:

* ``generate_s``: a fresh run dir, all skills generated (shards flushed every ``--flush-rows``);
* ``resume_s``: the same command again: reads run.json and every shard, sends no request;
* ``read_rows_s``: ``skillgen.rundir.sinks.read_rows`` over the finished run dir;
* ``shards``: shard files the run wrote;
* ``write_shard_ms`` / ``read_shard_ms``: one ``--flush-rows``-row shard of the run's rows written
  (zstd Parquet, write-once key; locally temp + fsync + rename) and read back, mean of 20.

    .venv/bin/python benchmarks/bench_s3_rundir.py --skills 400 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def one_run(run_dir: str, base_cfg: dict) -> dict:
    from skillgen.config import GenerationConfig
    from skillgen import run_generation
    from skillgen.rundir.sinks import read_rows

    cfg = GenerationConfig(**base_cfg, run_dir=run_dir)
    t0 = time.perf_counter()
    first = run_generation(cfg, progress=False)
    t1 = time.perf_counter()
    again = run_generation(cfg, progress=False)
    t2 = time.perf_counter()
    rows = read_rows(run_dir)
    t3 = time.perf_counter()
    assert first.status == "complete" and again.requests == 0, (first.status, again.requests)
    from skillgen.common.storage import resolve

    shard = rows.head(base_cfg["flush_rows"])
    copies = [resolve(f"{run_dir}-io") / f"part-{i:03d}.parquet" for i in range(20)]
    t4 = time.perf_counter()
    for loc in copies:
        loc.write_parquet(shard)
    t5 = time.perf_counter()
    for loc in copies:
        loc.read_parquet()
    t6 = time.perf_counter()
    return {
        "generate_s": t1 - t0, "resume_s": t2 - t1, "read_rows_s": t3 - t2, "rows": rows.height,
        "shards": len((resolve(run_dir) / "shards").list("part-*.parquet")),
        "write_shard_ms": (t5 - t4) / len(copies) * 1000, "read_shard_ms": (t6 - t5) / len(copies) * 1000,
    }


def main() -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skills", type=int, default=400)
    ap.add_argument("-n", "--sentences", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--flush-rows", type=int, default=200, help="rows per shard (small: many writes, the S3-heavy case)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import ray

    from conftest import synthetic_skill_rows, write_esco_csv
    from helpers.s3server import S3Server
    from skillgen.simulator.process import SimulatorProcess

    tmp = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    csv = write_esco_csv(tmp / "skills.csv", synthetic_skill_rows(args.skills))
    server = S3Server.start(tmp / "seaweedfs")
    try:
        os.environ.update(server.env())  # before ray.init: workers inherit the standard AWS variables
        bucket = server.make_bucket("bench")
        ray.init(address="local", num_cpus=max(2, args.workers), include_dashboard=False, log_to_driver=False)
        with SimulatorProcess(latency="fixed:0", seed=1, rpm=0, tpm=0) as sim:
            base = dict(base_url=sim.base_url, model="simulator", esco=str(csv), n_sentences=args.sentences,
                        workers=args.workers, worker_num_cpus=0.5, flush_rows=args.flush_rows, flush_seconds=60.0,
                        progress_interval_s=60.0, preflight=False)
            results: dict[str, list[dict]] = {"local": [], "s3": []}
            for i in range(args.repeats):
                results["local"].append(one_run(str(tmp / f"run-{i}"), base))
                results["s3"].append(one_run(f"s3://{bucket}/run-{i}", base))
        ray.shutdown()
    finally:
        server.stop()
    summary = {
        where: {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
        for where, runs in results.items()
    }
    print(json.dumps({"args": vars(args), "loadavg": os.getloadavg(), "median": summary, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
