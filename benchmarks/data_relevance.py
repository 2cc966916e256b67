"""Is each generated sentence about its own skill? A property of the data the lexical quality report cannot see.

    .venv/bin/python benchmarks/data_relevance.py RUN_DIR [RUN_DIR ...] --out benchmarks/results/data_relevance.json

For every sentence of each generation run dir, the stock (untrained) bundled all-MiniLM-L6-v2 (or
``--model DIR``) ranks all 13,896 ESCO skills, as ``skilltrain eval`` ranks them for a TECH/HOUSE sentence
(pooled cosine), and the rank of the sentence's *own* skill is kept: ``skillgen report --relevance`` for
several run dirs at once. The share of sentences whose skill comes first, in the top 5, 10 and 100, and
the median rank, say how much of the data names or describes its skill at all: a sentence
about something else teaches the encoder a wrong pair, whatever its fluency or diversity. Only skills
present in every run dir given are compared (unless ``--all-skills``), so two generators are judged on
the same skills.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def run_ranks(run_dir: Path, keep: set[str] | None, skills, model: Path | None) -> list[int]:
    """The 1-based rank of each sentence's own skill among all skills (zero-shot, pooled cosine): the same
    :func:`skillgen.own_skill_ranks` as ``skillgen report --relevance`` and ``--min-relevance-rank``."""
    from skillgen import own_skill_ranks
    from skillgen.rundir.sinks import read_rows

    rows = read_rows(run_dir).select("skill_id", "sentence")
    if keep is not None:
        rows = rows.filter(rows["skill_id"].is_in(sorted(keep)))
    return own_skill_ranks(rows["sentence"].to_list(), rows["skill_id"].to_list(), skills, model, progress=True).ranks.tolist()


def summarise(ranks: list[int]) -> dict[str, float]:
    n = len(ranks)
    return {"sentences": n, "own_skill_top1": round(sum(r == 1 for r in ranks) / n, 4),
            "own_skill_top5": round(sum(r <= 5 for r in ranks) / n, 4),
            "own_skill_top10": round(sum(r <= 10 for r in ranks) / n, 4),
            "own_skill_top100": round(sum(r <= 100 for r in ranks) / n, 4), "median_rank": statistics.median(ranks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("run_dirs", type=Path, nargs="+", help="generation run dirs (shards/, run.json)")
    parser.add_argument("--all-skills", action="store_true", help="every run dir's own skills, not only the common ones")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="encoder dir (default: the bundled all-MiniLM-L6-v2)")
    args = parser.parse_args()

    from skillgen.common.taxonomy import load_skills
    from skillgen.rundir.sinks import read_rows

    skills = load_skills()
    keep = None
    if not args.all_skills:
        keep = set.intersection(*(set(read_rows(d)["skill_id"].unique().to_list()) for d in args.run_dirs))
    result = {"skills_compared": len(keep) if keep is not None else "all",
              "runs": {str(d): summarise(run_ranks(d, keep, skills, args.model)) for d in args.run_dirs}}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
