"""``skillgen export RUN_DIR OUT``: the run's sentences as Parquet plus a Hugging Face dataset card."""

from __future__ import annotations

import argparse

HELP = "export a run dir as a dataset: data/*.parquet plus README.md (Hugging Face dataset card)"
DESCRIPTION = (
    "Writes OUT/data/train-00000-of-00001.parquet (one row per sentence: ESCO URI, label, skill type, sentence) and "
    "OUT/README.md, a dataset card with the Hub's YAML header stating the taxonomy and its version, the model, the "
    "prompt version and text, the sampling parameters, counts, cost and the licence (CC BY 4.0, ESCO's). Loads with "
    "polars.read_parquet('OUT/data/*.parquet') or datasets.load_dataset('parquet', data_dir='OUT')."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the --run-dir of a generation run (path or s3://bucket/prefix)")
    parser.add_argument("out", help="output folder (path or s3://bucket/prefix)")
    parser.add_argument("--name", default=None, help="dataset name in the card (default: the run dir's name)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the contents of a non-empty OUT that is not an earlier export (an earlier export is "
                             "replaced without it)")


def run(args: argparse.Namespace) -> int:
    from skillgen.export import export_dataset

    result = export_dataset(args.run_dir, args.out, name=args.name, overwrite=args.overwrite)
    print(f"exported {result.rows} sentences for {result.skills} skills to {result.out_dir}")
    return 0
