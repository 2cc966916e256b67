"""Is each generated sentence about its own skill? A property of the data the lexical quality report cannot see.

    .venv/bin/python benchmarks/data_relevance.py RUN_DIR [RUN_DIR ...] --out benchmarks/results/data_relevance.json

For every sentence of each generation run dir, the stock (untrained) bundled all-MiniLM-L6-v2 ranks all
13,896 ESCO skills, as ``skilltrain eval`` ranks them for a TECH/HOUSE sentence, and the rank of the
sentence's *own* skill is kept. The share of sentences whose skill comes first, in the top 10 and in the
top 100, and the median rank, say how much of the data names or describes its skill at all: a sentence
about something else teaches the encoder a wrong pair, whatever its fluency or diversity. Only skills
present in every run dir given are compared (unless ``--all-skills``), so two generators are judged on
the same skills.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def own_skill_ranks(run_dir: Path, keep: set[str] | None, encoder, index, position: dict[str, int]) -> list[int]:
    """The 1-based rank of each sentence's own skill among all skills (zero-shot, pooled cosine)."""
    import numpy as np

    from skillgen.rundir.sinks import read_rows

    rows = read_rows(run_dir).select("skill_id", "sentence")
    if keep is not None:
        rows = rows.filter(rows["skill_id"].is_in(sorted(keep)))
    scores = index.scores(encoder.encode(rows["sentence"].to_list()))
    own = np.array([position[s] for s in rows["skill_id"].to_list()])
    own_scores = scores[np.arange(len(own)), own]
    return (1 + (scores > own_scores[:, None]).sum(axis=1)).tolist()


def summarise(ranks: list[int]) -> dict[str, float]:
    n = len(ranks)
    return {"sentences": n, "own_skill_top1": round(sum(r == 1 for r in ranks) / n, 4),
            "own_skill_top10": round(sum(r <= 10 for r in ranks) / n, 4),
            "own_skill_top100": round(sum(r <= 100 for r in ranks) / n, 4), "median_rank": statistics.median(ranks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("run_dirs", type=Path, nargs="+", help="generation run dirs (shards/, run.json)")
    parser.add_argument("--all-skills", action="store_true", help="every run dir's own skills, not only the common ones")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path("benchmarks/out/relevance"), help="label embeddings kept here")
    args = parser.parse_args()

    from skillgen.common.taxonomy import load_skills
    from skillgen.rundir.sinks import read_rows
    from skilltrain.model import BiEncoder, default_model_dir
    from skilltrain.ranking import SkillIndex, model_fingerprint

    skills = load_skills()
    position = {s: i for i, s in enumerate(skills["skill_id"].to_list())}
    encoder = BiEncoder.from_pretrained()
    index = SkillIndex.build(encoder, skills, cache_dir=args.cache_dir, cache_key=model_fingerprint(default_model_dir()))
    keep = None
    if not args.all_skills:
        keep = set.intersection(*(set(read_rows(d)["skill_id"].unique().to_list()) for d in args.run_dirs))
    result = {"skills_compared": len(keep) if keep is not None else "all",
              "runs": {str(d): summarise(own_skill_ranks(d, keep, encoder, index, position)) for d in args.run_dirs}}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
