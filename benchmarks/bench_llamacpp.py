"""The main job's generation against a real local model: llama.cpp serving SmolLM2-135M-Instruct.

    .venv/bin/python benchmarks/bench_llamacpp.py --run-dir benchmarks/out/llama300/generation \
        --record benchmarks/out/llama300/exchanges.jsonl --out benchmarks/results/llamacpp_300.json

The same skills and sentences per skill as ``cluster/configs/local.toml`` (a random 300 ESCO skills,
``sample_seed = 0``, 10 sentences, temperature 1.0), through ``skillgen``'s online path with the
server's own limits (no ``--rpm``/``--tpm``: llama.cpp sends no rate-limit headers), one worker
(llama.cpp answers one request at a time) and zero prices. A recording proxy between skillgen and
the server keeps every raw answer (``--record``, JSONL) and the usage the server reported, which is
reconciled here with the run dir's ledger. Rerunning resumes (nothing already kept is asked again).
The result JSON holds wall time, tokens/s, requests, re-requests, failure records by reason, the
ledger vs the server's usage and the data-quality report. Train on the result with
``python -m cluster.pipeline --config cluster/configs/llamacpp.toml --run-dir <run-dir's parent>``.
Needs the ``llama`` extra (``pip install -e '.[llama]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def generation_values(args: argparse.Namespace, base_url: str) -> dict:
    """cluster/configs/llamacpp.toml's [generation], pointed at ``base_url`` (the same request keys)."""
    from cluster.config import load_pipeline_config

    values = dict(load_pipeline_config(ROOT / "cluster" / "configs" / "llamacpp.toml").generation)
    values.update(base_url=base_url, run_dir=str(args.run_dir), max_content_attempts=args.max_content_attempts)
    if args.sample:
        values["sample"] = args.sample
    if args.limit:
        values["limit"] = args.limit  # the first N of the sample: a rerun with a larger N adds to the same run dir
    if args.seed is not None:
        values["seed"] = args.seed  # run seed: llama.cpp honours each request's derived seed exactly
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--run-dir", type=Path, default=Path("benchmarks/out/llama300/generation"))
    parser.add_argument("--record", type=Path, default=Path("benchmarks/out/llama300/exchanges.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/llamacpp_300.json"))
    parser.add_argument("--sample", type=int, default=0, help="skills (0: the config's 300)")
    parser.add_argument("--limit", type=int, default=0,
                        help="only the first N of the sampled skills (0: all); rerun with a larger N to add to the run")
    parser.add_argument("--max-content-attempts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None, help="run seed (default: the config's, none)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--server-url", default=None,
                        help="a llama.cpp server already running (e.g. http://127.0.0.1:8080/v1) instead of starting one")
    args = parser.parse_args()

    from helpers.llamacpp import RecordingProxy, llama_server, read_exchanges, server_usage
    from skillgen.common.raycluster import init_ray
    from skillgen.config import make_config
    from skillgen.rundir.ledger import ledger_totals
    from skillgen.quality import quality_report
    from skillgen import run_generation

    args.record.parent.mkdir(parents=True, exist_ok=True)
    init_ray(None)
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    started = time.perf_counter()
    with ExitStack() as stack:
        upstream = args.server_url or stack.enter_context(
            llama_server(args.record.with_suffix(".server.log"), n_threads=args.threads))
        proxy = stack.enter_context(RecordingProxy(upstream, args.record))
        config = make_config(generation_values(args, proxy.base_url), source="bench_llamacpp")
        summary = run_generation(config, progress=True)
    wall = time.perf_counter() - started
    exchanges = read_exchanges(args.record)
    usage = server_usage(exchanges)
    ledger = ledger_totals(args.run_dir)
    report = quality_report(args.run_dir)
    result = {
        "command": " ".join(sys.argv),
        "wall_s_incl_server_start": round(wall, 1),
        "server_started_here": args.server_url is None,
        "loadavg_start_end": [load_start, Path("/proc/loadavg").read_text().split()[:3]],
        "summary": summary.to_dict(),
        "completion_tokens_per_s": round(summary.completion_tokens / max(summary.elapsed_s, 1e-9), 1),
        "server_usage_recorded": usage,
        "ledger": ledger.to_dict(),
        "ledger_matches_server": ledger_matches_server(ledger, usage),
        "quality": report.to_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(summary.format())
    print(report.format())
    print(f"ledger vs server: {result['ledger_matches_server']} ({ledger.prompt_tokens}+{ledger.completion_tokens} known "
          f"+ {ledger.unknown_attempts} timed out (worst case {ledger.unknown_worst_tokens} tokens) vs "
          f"{usage['prompt_tokens']}+{usage['completion_tokens']}, {usage['answered']} answered by the server)")


def ledger_matches_server(ledger, usage: dict) -> bool:
    """Whether the run's ledger accounts for every token the server reports having served.

    An attempt the client gave up on (timeout) may still be answered by the server: the ledger cannot
    know its tokens, so it holds the attempt's worst case (prompt estimate + max_tokens) against the cap.
    The ledger is right when its known tokens are what the server reports minus those attempts, each
    attempt the server answered is either a 200 or an unknown one, and the unknown ones' actual tokens
    fit inside their worst case."""
    unseen = usage["prompt_tokens"] - ledger.prompt_tokens + usage["completion_tokens"] - ledger.completion_tokens
    answered_ok = ledger.by_outcome.get("200", 0) <= usage["answered"] <= ledger.by_outcome.get("200", 0) + ledger.unknown_attempts
    if ledger.unknown_attempts == 0:
        return answered_ok and unseen == 0 and ledger.prompt_tokens == usage["prompt_tokens"]
    return answered_ok and 0 <= unseen <= ledger.unknown_worst_tokens


if __name__ == "__main__":
    main()
