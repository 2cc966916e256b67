"""A run dir whose relevant and irrelevant sentences are known by construction (relevance report and filter tests).

A taxonomy of eight skills far apart (forklifts, bread, violins, ...). Four of them have four sentences each
in the run dir. Every sentence of ``operate forklift``, ``teach mathematics`` and ``repair car engines`` is
about its own skill; ``play violin`` has two sentences about the violin and two about baking bread (the kind
of sentence a weak generator writes for the wrong skill). So with any sensible encoder 14 of 16 sentences
rank their own skill first, the two bread sentences rank ``bake bread`` first, and ``play violin`` is the
least relevant skill.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from conftest import write_esco_csv

LABELS = ["operate forklift", "bake bread", "play violin", "teach mathematics", "write Python programs",
          "repair car engines", "sail boats", "manage budgets"]
IRRELEVANT = ["You will bake fresh sourdough bread and pastries every morning.",
              "Knead the dough and bake loaves of bread in our bakery ovens."]
SENTENCES = {
    "operate forklift": ["You will drive a forklift truck to move pallets around the warehouse.",
                         "Experience operating forklifts in a warehouse is required.",
                         "Load and unload lorries with a forklift truck.",
                         "A valid forklift licence is essential for this warehouse role."],
    "teach mathematics": ["You will teach mathematics to secondary school pupils.",
                          "Plan and deliver maths lessons on algebra and geometry.",
                          "We are looking for a mathematics teacher for our school.",
                          "Explain mathematical concepts such as fractions to students."],
    "repair car engines": ["You will repair and service car engines in our garage.",
                           "Diagnose engine faults in cars and fix them.",
                           "Experience as a car mechanic repairing engines is required.",
                           "Overhaul petrol and diesel car engines."],
    "play violin": ["You will play the violin in our symphony orchestra.",
                    "Professional violinist wanted to perform violin concerts.", *IRRELEVANT],
}
RELEVANT_SHARE = 14 / 16


def skill_id(label: str) -> str:
    return f"http://example.org/skill/{LABELS.index(label):03d}"


def write_taxonomy(path: Path) -> Path:
    return write_esco_csv(path, [(skill_id(label), label, "", "skill/competence", "", f"{label.capitalize()}.")
                                 for label in LABELS])


def build_run_dir(location: Any, esco: Path) -> None:
    """Shards and run.json (naming ``esco`` as the run's taxonomy) in ``location``, a path or URI."""
    from skillgen.common.storage import resolve
    from skillgen.config import GenerationConfig
    from skillgen.rundir.sinks import ROW_SCHEMA, ROWS_DIR

    run_dir = resolve(location)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [{"skill_id": skill_id(label), "label": label, "sentence": text, "sample_idx": i, "request_key": f"key-{label}",
             "model": "fixture", "prompt_version": "v1", "prompt_tokens": 100, "completion_tokens": 80,
             "cost_usd": 0.0, "created_at": now}
            for label, texts in SENTENCES.items() for i, text in enumerate(texts)]
    (run_dir / ROWS_DIR / "part-0001.parquet").write_parquet(pl.DataFrame(rows, schema=ROW_SCHEMA))
    config = GenerationConfig(base_url="http://127.0.0.1:8080/v1", model="fixture", n_sentences=4, esco=str(esco),
                              run_dir=str(location), price_input_per_1m=0.0, price_output_per_1m=0.0)
    (run_dir / "run.json").write_text(json.dumps({"config": config.public_dict(), "fingerprint": config.fingerprint(),
                                                  "prompt_version": "v1", "history": []}))
