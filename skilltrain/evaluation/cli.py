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
from skilltrain.extraction.cli import add_diversity_argument, merge_diversity
from skilltrain.model import BiEncoder, check_encoder_dir, default_model_dir
from skilltrain.scoring import wants_diverse

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
    ranking = parser.add_argument_group("ranking (token-attention models; default: what `skilltrain extract` serves)")
    ranking.add_argument("--exhaustive", action="store_true",
                         help="score every skill with token attention instead of re-ranking the model's C pooled candidates")
    ranking.add_argument("--diverse", action=argparse.BooleanOptionalAction, default=None,
                         help="coverage-aware top-k on / off (default: what the model saved)")
    add_diversity_argument(ranking)
    ranking.add_argument("--choose-candidates", action="store_true",
                         help="choose C (two-stage ranking) and the coverage-aware top-k's default on the validation split, "
                              "print the curve and save both into the model directory's skilltrain_scoring.json")


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
    merge_diversity(args)
    if args.out is not None:  # before the minutes of evaluation whose results it would lose
        check_output_file(args.out, "--out", overwrite=args.overwrite, is_own=is_results_file,
                          own_kind="an earlier 'skilltrain eval' result")
    model_dir = check_encoder_dir(args.model if args.model is not None else default_model_dir())
    skills = load_skills(args.esco)
    benchmarks = load_benchmarks(skills, sets, "validation" if args.choose_candidates else args.split, args.benchmark_dir)
    encoder = BiEncoder.from_pretrained(model_dir, args.max_seq_length)
    if args.choose_candidates:
        return choose_and_save(encoder, Path(model_dir), skills, benchmarks, args)
    if wants_diverse(args.diverse) and not encoder.scoring.token_level:
        raise UserError(f"--diverse: {model_dir} ranks pooled; the coverage-aware top-k needs a token-attention model")
    note = dropped_gold_note(benchmarks)
    if note and not (args.esco is None or is_bundled_esco(args.esco)):
        print(note, file=sys.stderr)
    reports = evaluate(encoder, skills, benchmarks, progress=not args.json and sys.stderr.isatty(),
                       exhaustive=args.exhaustive or None, diverse=args.diverse)
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
    print(format_table(reports, title=f"{model_dir} ({ranking_name(encoder.scoring, args)}) on {args.split} ({skills.height} skills ranked)"))
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def ranking_name(scoring, args: argparse.Namespace) -> str:
    """How the table was ranked, e.g. ``token attention, T=3, two-stage C=128, plain top-k``."""
    if not scoring.token_level:
        return "pooled"
    candidates = scoring.ranking_candidates(args.exhaustive or None)
    stage = f"two-stage C={candidates}" if candidates else "exhaustive"
    strength = scoring.diversity_strength(args.diverse)
    top = "plain top-k" if strength is None else f"coverage-aware top-k ({strength:g})"
    return f"token attention, T={scoring.attention_temperature:g}, {stage}, {top}"


def choose_and_save(encoder: BiEncoder, model_dir: Path, skills, benchmarks, args: argparse.Namespace) -> int:
    """``--choose-candidates``: C and the coverage default on validation (as after training), saved with the model."""
    from dataclasses import asdict

    from skilltrain.evaluation.candidates import choose_candidates
    from skilltrain.evaluation.diversity import choose_diversity
    from skilltrain.evaluation.evaluate import encode_benchmarks
    from skilltrain.ranking import SkillIndex

    if not encoder.scoring.token_level:
        raise UserError(f"--choose-candidates: {model_dir} ranks pooled (one matmul over every skill); C applies to token-attention models")
    index = SkillIndex.build(encoder, skills, progress=not args.json and sys.stderr.isatty())
    encoded = encode_benchmarks(encoder, index, benchmarks)
    candidates, curve = choose_candidates(encoder, skills, benchmarks, index, encoded=encoded)
    on, strength, table = choose_diversity(encoder, skills, benchmarks, index, encoded=encoded)
    try:
        encoder.scoring.save(model_dir)
    except OSError as exc:
        raise UserError(f"{model_dir}: cannot save the scoring config ({exc.strerror})") from None
    result = {"candidates": candidates, "validation_curve": [p.to_json() for p in curve], "diverse": on, "diversity": strength,
              "diversity_validation": {str(k): v for k, v in table.items()}, "scoring": asdict(encoder.scoring)}
    print(json.dumps(result, indent=2) if args.json else format_choice(result))
    return 0


def format_choice(result: dict) -> str:
    lines = ["C      " + "".join(f"{name.upper() + ' RP@5/RP@10':>22}" for name in result["validation_curve"][0] if name != "candidates")]
    for point in result["validation_curve"]:
        cells = "".join(f"{v['RP@5']:>13.2f} /{v['RP@10']:>6.2f}" for k, v in point.items() if k != "candidates")
        lines.append(f"{point['candidates'] or 'all':<7}{cells}")
    lines.append(f"chosen C: {result['candidates'] or 'none (exhaustive)'}; coverage-aware top-k: strength {result['diversity']:g}, "
                 f"{'on' if result['diverse'] else 'off'} by default; saved to skilltrain_scoring.json")
    return "\n".join(lines)
