"""``skilltrain eval``: score a model on the TECH/HOUSE benchmarks."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from skillgen.common.errors import UserError
from skillgen.common.taxonomy import load_skills
from skilltrain.evaluation.benchmarks import SETS, SPLITS
from skilltrain.evaluation.evaluate import evaluate, format_table, load_benchmarks, results_json
from skilltrain.model import BiEncoder, default_model_dir

HELP = "evaluate a model: RP@1/5/10 and MRR on TECH/HOUSE, ranking all ESCO skills"
DESCRIPTION = (
    "Encode benchmark sentences and every ESCO skill label, rank skills by cosine similarity, and report "
    "RP@K = |gold in top K| / min(K, |gold|) and MRR per set, with 95%% bootstrap intervals over sentences."
)


def parse_sets(text: str) -> list[str]:
    sets = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown or not sets:
        raise UserError(f"--sets: unknown set(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SETS)}")
    return sets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="encoder directory (Hugging Face or sentence-transformers layout); default: bundled all-MiniLM-L6-v2")
    parser.add_argument("--sets", default="tech,house", help="comma-separated benchmark sets")
    parser.add_argument("--split", choices=SPLITS, default="test", help="tune on validation, report test")
    parser.add_argument("--esco", type=Path, default=None, help="ESCO skills CSV (default: $ESCO_SKILLS_CSV or ../shared/data/esco/skills_en.csv)")
    parser.add_argument("--benchmark-dir", type=Path, default=None, help="directory of {tech,house}_{split}.csv (default: ../shared/data/benchmarks)")
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON to this path")
    parser.add_argument("--max-seq-length", type=int, default=None, help="token limit per text (default: the model's)")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    sets = parse_sets(args.sets)
    skills = load_skills(args.esco)
    benchmarks = load_benchmarks(skills, sets, args.split, args.benchmark_dir)
    model_dir = args.model if args.model is not None else default_model_dir()
    encoder = BiEncoder.from_pretrained(model_dir, args.max_seq_length)
    reports = evaluate(encoder, skills, benchmarks, progress=True)
    print(format_table(reports, title=f"{model_dir} on {args.split} ({skills.height} skills ranked)"))
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results_json(reports), indent=2))
        except OSError as exc:
            raise UserError(f"{args.json}: cannot write results ({exc.strerror})") from None
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0
