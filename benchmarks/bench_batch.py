"""Batch mode against the simulator: is the cost ``skillgen estimate`` predicts (with a pilot) what is billed?

Starts ``skillgen sim-server`` (subprocess, gpt-4o-mini batch prices from the
shipped table), runs ``estimate(pilot=K)`` ``--repeats`` times (the pilot is
unseeded, so each draws other completions), then one ``--mode batch`` run of
the same skills per storage (``--storage local s3``: a temp dir, and a bucket
on a SeaweedFS server on loopback, tests/helpers/s3server.py), and prints every
estimate's error against the billed cost (the simulator's ``batch_cost_usd``)
and the ledger's reconciliation with what was billed (tokens, cost, ``skillgen
status``).

    .venv/bin/python benchmarks/bench_batch.py --sample 500 --pilot 100 --repeats 3 --storage local s3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # helpers/s3server.py


def main() -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument("-n", "--sentences", type=int, default=10)
    ap.add_argument("--pilot", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-max-requests", type=int, default=200)
    ap.add_argument("--storage", nargs="+", choices=["local", "s3"], default=["local"])
    args = ap.parse_args()
    server = None
    if "s3" in args.storage:
        from helpers.s3server import S3Server

        server = S3Server.start(Path(tempfile.mkdtemp(prefix="bench-batch-s3-")))
        os.environ.update(server.env())
    try:
        for storage in args.storage:
            run_dir = f"s3://{server.make_bucket('bench-batch')}/run" if storage == "s3" else None
            print(json.dumps({"storage": storage, **bench(args, run_dir)}, indent=2), flush=True)
    finally:
        if server is not None:
            server.stop()
    return 0


def reconcile(run_dir: str, stats: dict) -> dict:
    """The ledger against the provider's bill, and ``skillgen status`` against the ledger."""
    from skillgen.commands.status import status
    from skillgen.rundir.ledger import ledger_totals

    totals = ledger_totals(run_dir)
    billed_tokens = stats["batch_prompt_tokens_billed"] + stats["batch_completion_tokens_billed"]
    ledger_tokens = totals.prompt_tokens + totals.completion_tokens
    return {
        "ledger_attempts": totals.attempts, "ledger_by_outcome": totals.by_outcome,
        "ledger_tokens": ledger_tokens, "billed_tokens": billed_tokens,
        "tokens_diff_pct": round(100 * (ledger_tokens - billed_tokens) / max(1, billed_tokens), 4),
        "ledger_usd": totals.spent_usd, "billed_usd": stats["batch_cost_usd"],
        "usd_diff_pct": round(100 * (totals.spent_usd - stats["batch_cost_usd"]) / max(1e-12, stats["batch_cost_usd"]), 4),
        "status_cost_usd": status(run_dir).cost_usd,
    }


def bench(args: argparse.Namespace, run_dir: str | None) -> dict:

    from skillgen.config import GenerationConfig
    from skillgen.cost_estimate import estimate
    from skillgen import run_generation
    from skillgen.simulator.process import SimulatorProcess

    with SimulatorProcess(latency="fixed:0.05", batch_seconds_per_line=0.001, startup_timeout=300) as sim, \
            tempfile.TemporaryDirectory() as tmp:
        config = GenerationConfig(base_url=sim.base_url, model="gpt-4o-mini", n_sentences=args.sentences,
                                  sample=args.sample, sample_seed=1, run_dir=run_dir or str(Path(tmp) / "run"), mode="batch",
                                  batch_max_requests=args.batch_max_requests, batch_poll_min_s=0.5)
        estimates = [estimate(config, pilot=args.pilot) for _ in range(args.repeats)]
        sim.reset_stats()  # the pilots' online requests are not part of the batch run
        t0 = time.monotonic()
        summary = run_generation(config, progress=False)
        wall = time.monotonic() - t0
        stats = sim.stats()
        books = reconcile(config.run_dir, stats)
    billed = stats["batch_cost_usd"]
    out = {
        "skills": args.sample, "sentences": args.sentences, "pilot": args.pilot, "status": summary.status,
        "batches": stats["batches_created"], "billed_usd": billed, "run_total_usd": summary.total_cost_usd,
        "prompt_tokens_billed": stats["batch_prompt_tokens_billed"],
        "completion_tokens_billed": stats["batch_completion_tokens_billed"],
        "custom_ids_billed_twice": sum(1 for v in stats["batch_billed_by_custom_id"].values() if v > 1),
        "estimates": [{"cost_batch_usd": e.cost_batch_usd, "prompt_tokens": e.prompt_tokens,
                       "completion_tokens": e.completion_tokens,
                       "error_pct": round(100 * (e.cost_batch_usd - billed) / billed, 2)} for e in estimates],
        "reconciliation": books, "wall_s": round(wall, 1), "loadavg": os.getloadavg(),
    }
    return out


if __name__ == "__main__":
    sys.exit(main())
