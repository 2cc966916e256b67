"""``skilltrain eval``: score a model on the TECH/HOUSE benchmarks."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from skillgen.common import UserError, check_output_file, write_atomic
from skillgen.common import BENCHMARK_DIR_HELP, ESCO_HELP, is_bundled_esco
from skillgen.common import load_skills
from skilltrain.evaluation.benchmarks import SETS, SPLITS
from skilltrain.evaluation.evaluate import dropped_gold_note, evaluate, format_table, load_benchmarks, results_json
from skilltrain.model import BiEncoder, check_encoder_dir, default_model_dir

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
    parser.add_argument("--model", type=Path, default=None, help="encoder directory (Hugging Face or sentence-transformers layout) or a name: minilm, mpnet (installed separately, see README); default: minilm, the bundled all-MiniLM-L6-v2")
    parser.add_argument("--sets", default="tech,house", help="comma-separated benchmark sets")
    parser.add_argument("--split", choices=SPLITS, default="test", help="tune on validation, report test")
    parser.add_argument("--esco", type=Path, default=None, help=ESCO_HELP)
    parser.add_argument("--benchmark-dir", type=Path, default=None, help=BENCHMARK_DIR_HELP)
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON to this file")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file that is not an earlier 'skilltrain eval' result")
    parser.add_argument("--max-seq-length", type=int, default=None, help="token limit per text (default: the model's)")


def is_results_file(path: Path) -> bool:
    """An earlier ``skilltrain eval --out`` file: a JSON object of benchmark sets, each with RP@5."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data) and all(isinstance(v, dict) and "RP@5" in v for v in data.values())


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    sets = parse_sets(args.sets)
    if args.out is not None:  # before the minutes of evaluation whose results it would lose
        check_output_file(args.out, "--out", overwrite=args.overwrite, is_own=is_results_file,
                          own_kind="an earlier 'skilltrain eval' result")
    model_dir = check_encoder_dir(args.model if args.model is not None else default_model_dir())
    skills = load_skills(args.esco)
    benchmarks = load_benchmarks(skills, sets, args.split, args.benchmark_dir)
    encoder = BiEncoder.from_pretrained(model_dir, args.max_seq_length)
    note = dropped_gold_note(benchmarks)
    if note and not (args.esco is None or is_bundled_esco(args.esco)):
        print(note, file=sys.stderr)
    reports = evaluate(encoder, skills, benchmarks, progress=not args.json and sys.stderr.isatty())
    results = results_json(reports)
    if args.out is not None:
        try:
            write_atomic(args.out.expanduser(), json.dumps(results, indent=2))
        except OSError as exc:
            print(json.dumps(results, indent=2))  # the minutes of evaluation are not lost
            raise UserError(f"--out {args.out}: cannot write results ({exc.strerror}); they are printed above") from None
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    sc = encoder.scoring
    how = f"token attention, T={sc.attention_temperature:g}" if sc.token_level else "pooled"
    print(format_table(reports, title=f"{model_dir} ({how}) on {args.split} ({skills.height} skills ranked)"))
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0
