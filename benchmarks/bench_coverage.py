"""BENCHMARKS.md "Extraction", coverage-aware top-k (issue 26): what ``--diverse`` does to quality.

For a token-attention model, on TECH/HOUSE validation and test, ranked as extraction ranks (two-stage with the
model's C): RP@5 / RP@10 / MRR of plain top-k and of the coverage-aware top-k at each strength, over all
sentences and over those with two or more gold skills (``<set>/2+``). Then the top 5 of the issue's
multi-skill sentence at each strength. The model's saved choice (``skilltrain_scoring.json``) is printed
beside it: ``skilltrain eval --choose-candidates`` chose it on validation; test is reported, not tuned on.

    .venv/bin/python benchmarks/bench_coverage.py --model runs/local/model --save coverage.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MULTI_SKILL = ("You will build ETL pipelines in Python and Spark, maintain our PostgreSQL databases and mentor "
               "junior developers.")
STRENGTHS = (0.0, 0.05, 0.1, 0.2, 0.3)


def quality(model_dir: Path, strengths: tuple[float, ...]) -> dict:
    """{split: {strength or "plain": coverage_report}} on TECH/HOUSE validation and test."""
    from skillgen.common import load_skills, resolve_esco_path
    from skilltrain.evaluation.diversity import coverage_report
    from skilltrain.evaluation.evaluate import encode_benchmarks, load_benchmarks
    from skilltrain.extraction.extractor import index_cache_dir, taxonomy_cache_key
    from skilltrain.model import BiEncoder
    from skilltrain.ranking import SkillIndex

    esco = resolve_esco_path(None)
    encoder, skills = BiEncoder.from_pretrained(model_dir), load_skills(esco)
    index = SkillIndex.build(encoder, skills, cache_dir=index_cache_dir(model_dir),
                             cache_key=taxonomy_cache_key(model_dir, esco, skills))
    out = {}
    for split in ("validation", "test"):
        encoded = encode_benchmarks(encoder, index, load_benchmarks(skills, split=split))
        out[split] = {("plain" if s is None else str(s)): coverage_report(index, encoded, encoder.scoring, s)
                      for s in (None, *strengths)}
    return out


def example(model_dir: Path, strengths: tuple[float, ...]) -> dict[str, list[str]]:
    """The multi-skill sentence's top 5, plain and at each strength."""
    from skilltrain.extraction.extractor import SkillExtractor

    extractor = SkillExtractor.from_pretrained(model_dir)
    ranked = {"plain": False, "saved strength": True, **{str(s): s for s in strengths}}
    return {name: [m.label for m in extractor.extract_sentences([MULTI_SKILL], diverse=d)[0].skills] for name, d in ranked.items()}


def markdown(result: dict) -> str:
    lines = []
    for split, table in result["quality"].items():
        sets = [name for name in next(iter(table.values()))]
        lines += ["", f"| {split} | " + " | ".join(f"{s.upper()} RP@5 / RP@10 / MRR" for s in sets) + " |",
                  "|---|" + "---|" * len(sets)]
        for strength, report in table.items():
            cells = " | ".join(f"{report[s]['RP@5']:.2f} / {report[s]['RP@10']:.2f} / {report[s]['MRR']:.2f}" for s in sets)
            lines.append(f"| {strength} | {cells} |")
    lines += ["", f"saved: {result['saved']}", ""] + [f"{name}: {', '.join(labels)}" for name, labels in result["example"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a token-attention model directory")
    parser.add_argument("--strengths", type=float, nargs="+", default=list(STRENGTHS))
    parser.add_argument("--save", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    from skilltrain.scoring import ScoringConfig

    strengths = tuple(args.strengths)
    saved = ScoringConfig.load(args.model)
    if not saved.token_level:
        parser.error(f"--model {args.model}: ranks pooled; the coverage-aware top-k needs a token-attention model")
    result = {"model": str(args.model), "saved": {"diverse": saved.diverse, "diversity": saved.diversity, "candidates": saved.candidates},
              "quality": quality(args.model, strengths), "example": example(args.model, strengths)}
    print(markdown(result))
    if args.save is not None:
        args.save.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
