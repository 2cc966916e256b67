"""Generation benchmarks against the bundled simulator (real HTTP, real Ray actors).

Scenarios (``--scenario``):
- ``clean``: OpenAI-like limits (default 60,000 TPM, 600 RPM, 0.5 s latency). Reports steady-state
  debited tokens (prompt + max_tokens, what the limiter charges) as % of the limit, the share of 429s,
  useful (billed) tokens as % of the limit, truncations, lost/duplicated rows.
- ``faults``: the same plus 5% 500s, 1% hangs (``--hang-seconds``, default 900 s; the client gives up
  after 5 s), 1% drops. Also reports the request ledger's outcome counts and worst-case spend.
- ``latency``: 1 s latency, no limits: requests/s.
- ``overhead``: no latency, no limits: requests/s and driver+worker CPU ms per request.

Steady state = the window after the first 25% and before the last 10% of the run, so the initial
full bucket (a minute's allowance) does not inflate utilisation.

    .venv/bin/python benchmarks/bench_generation.py --scenario clean --skills 400
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=["clean", "faults", "latency", "overhead"], default="clean")
    ap.add_argument("--skills", type=int, default=400)
    ap.add_argument("-n", "--sentences", type=int, default=10)
    ap.add_argument("--tpm", type=int, default=60000)
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--latency", type=float, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=400)
    ap.add_argument("--no-adaptive", action="store_true")
    ap.add_argument("--hang-seconds", type=float, default=900.0)
    args = ap.parse_args()

    import ray

    from conftest import synthetic_skill_rows, write_esco_csv
    from skillgen.config import GenerationConfig
    from skillgen import run_generation
    from skillgen.simulator.process import SimulatorProcess
    from skillgen.rundir.sinks import read_failures, read_rows

    tmp = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    csv = write_esco_csv(tmp / "skills.csv", synthetic_skill_rows(args.skills))
    limited = args.scenario in ("clean", "faults")
    latency = args.latency if args.latency is not None else {"clean": 0.5, "faults": 0.5, "latency": 1.0, "overhead": 0.0}[args.scenario]
    sim_opts = dict(latency=f"fixed:{latency}", seed=1, rpm=args.rpm if limited else 0, tpm=args.tpm if limited else 0)
    if args.scenario == "faults":
        sim_opts.update(fault_rates="500=0.05,hang=0.01,drop=0.01", hang_seconds=args.hang_seconds)
    samples: list[tuple[float, float, float]] = []

    def on_update(state, budget):  # SchedulerState, BudgetSnapshot (None before the first tick)
        if budget is not None:
            samples.append((time.monotonic(), budget.reserved_tokens, budget.prompt_tokens + budget.completion_tokens))

    ray.init(address="local", num_cpus=max(2, args.workers), include_dashboard=False, log_to_driver=False)
    with SimulatorProcess(**sim_opts) as sim:
        cfg = GenerationConfig(
            base_url=sim.base_url, model="simulator", esco=str(csv), run_dir=str(tmp / "run"), n_sentences=args.sentences,
            workers=args.workers, worker_num_cpus=0.5, max_tokens=args.max_tokens, adaptive_max_tokens=not args.no_adaptive,
            rpm=args.rpm if limited else None, tpm=args.tpm if limited else None, request_timeout_s=5.0 if args.scenario == "faults" else 60.0,
            flush_seconds=2.0, progress_interval_s=15.0, max_attempts=10,
        )
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        summary = run_generation(cfg, progress=False, on_update=on_update)
        wall = time.monotonic() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        stats = sim.stats()
    rows = read_rows(tmp / "run", dedupe=False)
    fails = read_failures(tmp / "run")
    out = {
        "scenario": args.scenario, "skills": args.skills, "sentences": args.sentences, "workers": args.workers,
        "latency_s": latency, "wall_s": round(wall, 1), "requests_sent": stats["received"], "served": stats["served"],
        "rate_limited": stats["failed"].get("rate_limited", 0), "failed": stats["failed"], "truncated": summary.truncated,
        "rows": rows.height, "expected_rows": args.skills * args.sentences, "failure_records": fails.height,
        "duplicates": int(rows.select(["skill_id", "sample_idx"]).is_duplicated().sum()),
        "prompt_tokens_billed": stats["prompt_tokens_billed"], "completion_tokens_billed": stats["completion_tokens_billed"],
        "estimated_prompt_tokens": summary.estimated_prompt_tokens,
        "ledger_by_outcome": summary.ledger.by_outcome,
        "ledger_tokens": summary.ledger.prompt_tokens + summary.ledger.completion_tokens,
        "ledger_unknown_attempts": summary.ledger.unknown_attempts,
        "driver_cpu_ms_per_request": round(1000 * ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / max(1, stats["received"]), 2),
    }
    out["rate_limited_pct"] = round(100 * out["rate_limited"] / max(1, out["requests_sent"]), 2)
    out["truncated_pct"] = round(100 * summary.truncated / max(1, stats["served"]), 2)
    if limited and len(samples) > 10:
        t_start, t_end = samples[0][0], samples[-1][0]
        span = t_end - t_start
        a = next(s for s in samples if s[0] >= t_start + 0.25 * span)
        b = next(s for s in reversed(samples) if s[0] <= t_start + 0.9 * span)
        window = b[0] - a[0]
        out["steady_window_s"] = round(window, 1)
        out["debited_pct_of_limit"] = round(100 * (b[1] - a[1]) / (args.tpm / 60 * window), 1)
        out["billed_pct_of_limit"] = round(100 * (b[2] - a[2]) / (args.tpm / 60 * window), 1)
    else:
        out["requests_per_s"] = round(stats["received"] / wall, 1)
    print(json.dumps(out, indent=2))
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
