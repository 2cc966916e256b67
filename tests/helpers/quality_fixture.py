"""A hand-built run dir whose quality numbers are known by construction (tests/test_quality_report.py).

Three skills, ``-n 4``, 11 sentences, two failure records:

* skill 0 ``Python``: a label copy, the label alone, and the same sentence twice (punctuation and case aside);
* skill 1 ``manage budgets``: the first skill's template with its own label, two near-duplicates (word-set
  Jaccard 8/9); three sentences only (short of -n);
* skill 2 ``java``: ``JavaScript`` (not a label copy: whole words only), skill 1's sentence verbatim, the label
  alone, one label copy.

Every expected number is in :data:`EXPECTED`, derived in the comments next to the rows.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import polars as pl

N = 4
SKILLS = [("Python", [
    "Experience with Python is required.",   # label; template "experience with <label> is required"
    "Python",                                 # the label only
    "You will write Python code daily.",      # label
    "you will write python code, daily!",     # label; exact duplicate of the previous (normalised)
]), ("manage budgets", [
    "Experience with manage budgets is required.",        # label; same template as skill 0's first
    "You keep the spending of projects under control.",   # exact duplicate of skill 2's second
    "You keep the spending of all projects under control.",  # near-duplicate of the previous (8/9)
]), ("java", [
    "Knowledge of JavaScript frameworks.",                # no label: "java" is not a word of it
    "You keep the spending of projects under control.",   # exact duplicate across skills
    "Java",                                                # the label only
    "Strong Java skills.",                                 # label
])]

EXPECTED = {
    "sentences": 11, "skills": 3, "skills_short_of_n": 1, "skills_failed": 2,
    "within_skill": 1, "across_skills": 2,
    # masked keys shared by two skills: "experience with <label> is required" (2), "<label>" (2), the verbatim copy (2)
    "template_across_skills": 6,
    "near_duplicates_within_skill": 2,  # skill 0's repeat, skill 1's Jaccard 8/9
    "label_verbatim": 7, "label_only": 2,
    "words": {"min": 1, "max": 9, "mean_words": round(57 / 11, 2)},
    "by_class": {"validation": 1, "4xx": 1},
    "validation_problems": {"duplicate": 1, "not JSON": 1, "truncated JSON": 1},
}

VALIDATION_MESSAGE = ("2/4 valid sentences after 4 responses: truncated JSON, 1 duplicate (finish_reason=length); "
                      "not JSON (plain lines) (finish_reason=stop)")


def skill_ids() -> list[str]:
    """Five real ESCO ids (the bundled taxonomy), so samples group by real skill types."""
    from skillgen.common.taxonomy import load_skills

    return load_skills(None).filter(pl.col("skill_type") != "").sort("skill_id").head(5)["skill_id"].to_list()


def build_run_dir(location: Any, model: str = "smollm2") -> None:
    """Write the fixture's shards, failure records and run.json into ``location`` (a path or URI)."""
    from skillgen.common.storage import resolve
    from skillgen.config import GenerationConfig
    from skillgen.rundir.sinks import FAILURE_SCHEMA, FAILURES_DIR, ROW_SCHEMA, ROWS_DIR

    run_dir = resolve(location)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ids = skill_ids()
    rows = [{"skill_id": ids[s], "label": label, "sentence": text, "sample_idx": i, "request_key": f"key{s}",
             "model": model, "prompt_version": "v1", "prompt_tokens": 200, "completion_tokens": 150,
             "cost_usd": 0.0, "created_at": now}
            for s, (label, texts) in enumerate(SKILLS) for i, text in enumerate(texts)]
    (run_dir / ROWS_DIR / "part-0001.parquet").write_parquet(pl.DataFrame(rows[:6], schema=ROW_SCHEMA))
    (run_dir / ROWS_DIR / "part-0002.parquet").write_parquet(pl.DataFrame(rows[6:], schema=ROW_SCHEMA))
    failures = [
        {"skill_id": ids[3], "request_key": "key3", "error_class": "validation", "message": VALIDATION_MESSAGE,
         "attempts": 4, "created_at": now, "label": "bake bread", "n_missing": 2, "cost_usd": 0.0},
        {"skill_id": ids[4], "request_key": "key4", "error_class": "4xx", "message": "HTTP 400: context length",
         "attempts": 1, "created_at": now, "label": "sail boats", "n_missing": 4, "cost_usd": 0.0},
    ]
    (run_dir / FAILURES_DIR / "part-0001.parquet").write_parquet(pl.DataFrame(failures, schema=FAILURE_SCHEMA))
    config = GenerationConfig(base_url="http://127.0.0.1:8080/v1", model=model, n_sentences=N, run_dir=str(location),
                              json_schema_in="json_object", price_input_per_1m=0.0, price_output_per_1m=0.0)
    import json

    (run_dir / "run.json").write_text(json.dumps({"config": config.public_dict(), "fingerprint": config.fingerprint(),
                                                  "prompt_version": "v1", "history": []}))
