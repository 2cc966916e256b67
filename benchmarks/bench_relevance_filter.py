"""What ``--min-relevance-rank K`` does to the main job's model when the data comes from a real (small) model.

    .venv/bin/python benchmarks/bench_relevance_filter.py --generation benchmarks/out/issue29/llama/generation \
        --limit 100 --seed 0 --ks none,1,5,20 --root benchmarks/out/issue29/arms \
        --out benchmarks/results/relevance_filter_smollm2.json

``--generation`` is a finished generation run dir of ``cluster/configs/llamacpp.toml`` (SmolLM2-135M behind
llama.cpp; ``benchmarks/bench_llamacpp.py --limit N --seed S`` makes one). For each K (``none``: no filter)
the main job's pipeline runs in ``<root>/k<K>`` on a copy of it: the config's [training] and [evaluation]
(local.toml's recipe, kept equal by tests/test_cluster_manifests.py) plus ``min_relevance_rank = K``.
Generation is complete, so nothing is sent (no server needed). The zero-shot baseline is scored once, in
the ``none`` arm. K is chosen on validation (the fit's best validation RP@5, TECH and HOUSE validation);
every arm's test RP@5 with its 95% bootstrap interval is reported, the choice marked. A filtered arm
trains fewer steps (one epoch of less data); ``--match-steps`` adds, for each K, an arm trained for as many
epochs as give the unfiltered arm's number of steps, so the filter is also compared at equal steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEASE_FILE = ".skillgen.lease"


def arm_config(base, run_dir: Path, k: int | None, limit: int, seed: int | None, epochs: int | None = None):
    """The base pipeline config on ``run_dir``, its generation as generated (same fingerprint), filter K
    (and ``epochs`` instead of the recipe's, for a steps-matched arm)."""
    generation = {**base.generation, "limit": limit, "preflight": False}
    if seed is not None:
        generation["seed"] = seed
    training = {key: v for key, v in base.training.items() if key != "min_relevance_rank"}
    if k is not None:
        training["min_relevance_rank"] = k
    if epochs is not None:
        training["epochs"] = epochs
    evaluation = base.evaluation.model_copy(update={"baseline": k is None})
    return base.model_copy(update={"run_dir": run_dir, "generation": generation, "training": training,
                                   "evaluation": evaluation})


def run_arm(base, args: argparse.Namespace, k: int | None, epochs: int | None = None) -> dict:
    """One pipeline run (resumed, so a finished arm costs nothing again) and what it scored."""
    from cluster.pipeline import run_pipeline

    run_dir = args.root / (f"k{k if k is not None else 'none'}" + (f"-e{epochs}" if epochs else ""))
    if not (run_dir / "generation").exists():
        shutil.copytree(args.generation, run_dir / "generation", ignore=shutil.ignore_patterns(LEASE_FILE))
    config = arm_config(base, run_dir, k, args.limit, args.seed, epochs)
    started = time.perf_counter()
    run_pipeline(config)
    fit = json.loads((run_dir / "model" / "skilltrain_config.json").read_text())
    result = {
        "k": k, "epochs": fit["epochs"], "wall_s": round(time.perf_counter() - started, 1),
        "pairs": fit["data_info"]["pairs"], "skills": fit["data_info"]["skills"],
        "steps_per_epoch": fit["data_info"]["steps_per_epoch"], "steps": fit["data_info"]["total_steps"],
        "relevance_filter": fit["data_info"].get("relevance_filter"),
        "val_rp5": json.loads((run_dir / "model" / "fit_result.json").read_text())["best_metrics"].get("val_rp5"),
        "test": {name: {"RP@5": r["RP@5"], "ci95": r["ci95"]["RP@5"]}
                 for name, r in json.loads((run_dir / f"results_{config.evaluation.split}.json").read_text()).items()},
    }
    baseline = run_dir / f"baseline_{config.evaluation.split}.json"
    if baseline.exists():
        result["zero_shot"] = {name: {"RP@5": r["RP@5"], "ci95": r["ci95"]["RP@5"]}
                               for name, r in json.loads(baseline.read_text()).items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--generation", type=Path, required=True, help="finished generation run dir of --config")
    parser.add_argument("--config", type=Path, default=ROOT / "cluster" / "configs" / "llamacpp.toml")
    parser.add_argument("--limit", type=int, required=True, help="the --limit the generation ran with")
    parser.add_argument("--seed", type=int, default=None, help="the --seed the generation ran with")
    parser.add_argument("--ks", default="none,1,5,20", help="comma-separated K values; none = no filter")
    parser.add_argument("--root", type=Path, default=Path("benchmarks/out/relevance_filter"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--match-steps", action="store_true",
                        help="also train each filtered arm for as many epochs as give the unfiltered arm's steps")
    args = parser.parse_args()

    from cluster.config import load_pipeline_config

    base = load_pipeline_config(args.config)
    arms = [run_arm(base, args, None if k.strip() == "none" else int(k)) for k in args.ks.split(",")]
    unfiltered = next((a for a in arms if a["k"] is None), None)
    if args.match_steps and unfiltered is not None:
        matched = [(a["k"], round(unfiltered["steps"] / a["steps_per_epoch"])) for a in arms if a["k"] is not None]
        arms += [run_arm(base, args, k, epochs) for k, epochs in matched if epochs > 1]
    scored = [a for a in arms if a["val_rp5"] is not None]
    best = max(scored, key=lambda a: a["val_rp5"]) if scored else None  # a tie keeps the earlier arm
    chosen = None if best is None else {"k": "none" if best["k"] is None else best["k"], "epochs": best["epochs"]}
    result = {"command": " ".join(sys.argv), "chosen_on_validation": chosen, "arms": arms}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
