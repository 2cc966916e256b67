"""Checks of a model card against the model dir's own record (tests/test_model_card.py, the fit and pipeline tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

METRICS = ("RP@1", "RP@5", "RP@10", "MRR")
CELL = re.compile(r"^(\d+\.\d+) \[(\d+\.\d+), (\d+\.\d+)\]$")


def card_header(text: str) -> dict[str, Any]:
    """The YAML header, parsed by huggingface_hub as the Hub would (model-index included)."""
    from huggingface_hub import ModelCard

    return ModelCard(text).data.to_dict()


def table_rows(text: str, model: str) -> dict[str, dict[str, Any]]:
    """``{set: {metric: (value, lo, hi)}, "n": n}`` from the card's score table rows for ``model``."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 + len(METRICS) and cells[1] == model:
            parsed = {m: tuple(float(x) for x in CELL.match(c).groups()) for m, c in zip(METRICS, cells[3:])}
            rows[cells[0].lower()] = {**parsed, "n": int(cells[2])}
    return rows


def check_card(model_dir: Path, baseline: dict | None = None) -> str:
    """README.md's header and score table state exactly eval_results.json's test scores (and the baseline's when given)."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    text = (model_dir / "README.md").read_text()
    tested = json.loads((model_dir / "eval_results.json").read_text())["test"]
    header = card_header(text)
    assert header["library_name"] == "sentence-transformers" and header["pipeline_tag"] == "sentence-similarity"
    assert header["base_model"] and header["license"] and header["datasets"] and "skill-extraction" in header["tags"]
    _, results = model_index_to_eval_results(header["model-index"])
    from_header = {(r.dataset_type, r.metric_name): r.metric_value for r in results}
    assert from_header == {(name, m): scores[m] for name, scores in tested.items() for m in METRICS}
    _check_rows(table_rows(text, "this model"), tested)
    if baseline is not None:
        _check_rows(table_rows(text, "zero-shot"), {name: baseline[name] for name in tested})
    else:
        assert not table_rows(text, "zero-shot")
    return text


def _check_rows(rows: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    assert set(rows) == set(expected)
    for name, scores in expected.items():
        assert rows[name]["n"] == scores["n"]
        for m in METRICS:
            assert rows[name][m] == (scores[m], *scores["ci95"][m]), (name, m)
