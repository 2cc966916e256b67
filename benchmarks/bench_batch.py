"""Batch mode against the simulator: is the cost ``skillgen estimate`` predicts (with a pilot) what is billed?

Starts ``skillgen sim-server`` (subprocess, gpt-4o-mini batch prices from the
shipped table), runs ``estimate(pilot=K)`` ``--repeats`` times (the pilot is
unseeded, so each draws other completions), then one ``--mode batch`` run of
the same skills, and prints every estimate's error against the billed cost
(the simulator's ``batch_cost_usd``) and the run's own accounting.

    .venv/bin/python benchmarks/bench_batch.py --sample 500 --pilot 100 --repeats 3
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


def main() -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument("-n", "--sentences", type=int, default=10)
    ap.add_argument("--pilot", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-max-requests", type=int, default=200)
    args = ap.parse_args()

    from skillgen.config import GenerationConfig
    from skillgen.estimate import estimate
    from skillgen.run import run_generation
    from skillgen.simulator.process import SimulatorProcess

    with SimulatorProcess(latency="fixed:0.05", batch_seconds_per_line=0.001) as sim, tempfile.TemporaryDirectory() as tmp:
        config = GenerationConfig(base_url=sim.base_url, model="gpt-4o-mini", n_sentences=args.sentences,
                                  sample=args.sample, sample_seed=1, run_dir=str(Path(tmp) / "run"), mode="batch",
                                  batch_max_requests=args.batch_max_requests, batch_poll_min_s=0.5)
        estimates = [estimate(config, pilot=args.pilot) for _ in range(args.repeats)]
        sim.reset_stats()  # the pilots' online requests are not part of the batch run
        t0 = time.monotonic()
        summary = run_generation(config, progress=False)
        wall = time.monotonic() - t0
        stats = sim.stats()
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
        "wall_s": round(wall, 1), "loadavg": os.getloadavg(),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
