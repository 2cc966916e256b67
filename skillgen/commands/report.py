"""``skillgen report RUN_DIR``: the data-quality report of a generation run, without Ray."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = ("data-quality report of a run dir: per-skill counts, duplicates, label copies, lengths, diversity, failures; "
        "--relevance: does each sentence rank its own skill first for an encoder")
DESCRIPTION = (
    "Reads the run dir's Parquet shards and failure records (a path or s3://...) and reports what the sentences are "
    "worth before training on them: skills short of -n, duplicate and near-duplicate rates within and across skills, "
    "templates shared across skills once the label is masked, the share of sentences that contain the skill's label "
    "verbatim or are only the label, sentence lengths, distinct n-grams, failure records by reason, and a sample of "
    "sentences per skill type. --relevance adds what those counts cannot see: for an encoder (the bundled "
    "all-MiniLM-L6-v2, the main job's start encoder, unless --model), the share of sentences whose own skill ranks "
    "first, in the top 5 and in the top 10 among all skills of the taxonomy, the median rank, and the least relevant "
    "skills with a sample of their sentences (a few minutes for 140,000 sentences on 2 cores)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the --run-dir of a generation run (path or s3://bucket/prefix)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--plots", metavar="DIR", type=Path, default=None, help="also write PNG plots into DIR")
    parser.add_argument("--samples", type=int, default=3, help="sample sentences shown per skill type")
    parser.add_argument("-n", "--sentences", type=int, default=None, help="sentences per skill expected (default: the run's -n)")
    relevance = parser.add_argument_group("relevance")
    relevance.add_argument("--relevance", action="store_true",
                           help="rank every skill for every sentence with an encoder and report where its own skill lands")
    relevance.add_argument("--model", metavar="DIR", type=Path, default=None,
                           help="encoder dir for --relevance (Hugging Face / sentence-transformers; pooled cosine); "
                                "default: the bundled all-MiniLM-L6-v2")
    relevance.add_argument("--esco", metavar="CSV", default=None,
                           help="taxonomy whose skills --relevance ranks (default: the run's own, from run.json)")


def check(args: argparse.Namespace) -> None:
    """A run dir (like ``status``: a typo, an empty folder or a file is not a report of zeros), sane numbers,
    and a folder for the plots, before anything is read or written."""
    from skillgen.common.errors import UserError
    from skillgen.common.outputs import check_writable_path
    from skillgen.rundir.rundir import existing_run_dir

    existing_run_dir(args.run_dir)
    if args.samples < 0:
        raise UserError(f"--samples: must be >= 0 (got {args.samples})")
    if args.sentences is not None and args.sentences < 1:
        raise UserError(f"-n: must be >= 1 (got {args.sentences})")
    if args.plots is not None:
        check_writable_path(args.plots.expanduser(), "--plots", "dir")
    if not args.relevance and (args.model is not None or args.esco is not None):
        raise UserError("--model and --esco choose what --relevance ranks with; add --relevance")
    if args.model is not None and not (args.model.expanduser() / "config.json").is_file():
        raise UserError(f"--model {args.model}: not an encoder dir (no config.json)")
    if args.esco is not None:
        from skillgen.common.taxonomy import resolve_esco_path

        if not Path(resolve_esco_path(args.esco)).exists():
            raise UserError(f"--esco {args.esco}: no such file")


def run(args: argparse.Namespace) -> int:
    from skillgen.quality import quality_report

    check(args)
    report = quality_report(args.run_dir, n_sentences=args.sentences, samples_per_type=args.samples)
    if args.plots is not None:
        from skillgen.quality.plots import plot_quality
        from skillgen.rundir.sinks import read_rows

        args.plots.mkdir(parents=True, exist_ok=True)
        plot_quality(read_rows(args.run_dir), args.plots)
    ranked = None
    if args.relevance:
        from skillgen.quality.relevance import relevance_report

        ranked = relevance_report(args.run_dir, args.model, args.esco, samples=args.samples, progress=not args.json)
    if args.json:
        print(json.dumps({**report.to_dict(), **({"relevance": ranked.to_dict()} if ranked else {})}, indent=2, default=str))
    else:
        print(report.format() + (f"\n{ranked.format()}" if ranked else ""))
    return 0
