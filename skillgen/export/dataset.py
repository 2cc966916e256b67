"""Export a generation run dir as a dataset other tools load directly (Hugging Face datasets layout).

    OUT/README.md                              the dataset card: YAML header + what made the data
    OUT/data/train-00000-of-00001.parquet      one row per sentence (ESCO URI, label, type, sentence)

``datasets.load_dataset("parquet", data_dir=OUT)`` or ``load_dataset(OUT)`` (the card's
``configs`` names the files) and ``polars.read_parquet(OUT + "/data/*.parquet")`` both read it;
nothing here depends on this project at load time. The card states where the data came from
(taxonomy and version, licence CC BY 4.0 as ESCO's), how (model, prompt version and its full
text, sampling parameters) and what it cost (the ledger's spend), so a shared copy stays honest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from skillgen.common.errors import UserError
from skillgen.common.storage import Location

__all__ = ["COLUMNS", "DATA_FILE", "ESCO_LICENCE", "ExportResult", "dataset_card", "export_dataset",
           "size_category", "taxonomy_facts"]

DATA_FILE = "data/train-00000-of-00001.parquet"
COLUMNS = ("skill_id", "label", "skill_type", "sentence", "sample_idx", "model", "prompt_version")
ESCO_LICENCE = "cc-by-4.0"  # ESCO is published by the European Commission under CC BY 4.0
CARD_TITLE = "Synthetic job-ad sentences for ESCO skills"  # the card's title: how a later export knows an earlier one
EXPORT_FILES = ("README.md", "data")  # what an export writes, and what replacing an earlier one removes


@dataclass(frozen=True)
class ExportResult:
    out_dir: Location
    rows: int
    skills: int
    card: str


def export_dataset(run_dir: str | Path, out_dir: str | Path, name: str | None = None, overwrite: bool = False) -> ExportResult:
    """Write ``out_dir`` (a path or URI) from ``run_dir``'s shards, run.json and ledger.

    ``out_dir`` must be new, empty or an earlier export (whose card and data are replaced; other files, such
    as a dataset repository's ``.git``, stay); ``overwrite`` replaces anything else in it.
    """
    from skillgen.common.outputs import check_output_dir
    from skillgen.rundir.ledger import ledger_totals
    from skillgen.rundir.rundir import existing_run_dir
    from skillgen.rundir.runstate import read_run_json
    from skillgen.rundir.sinks import read_failures, read_rows

    existing_run_dir(run_dir)
    output = check_output_dir(out_dir, "export dir", overwrite=overwrite, is_own=is_export,
                              own_kind="an earlier 'skillgen export'", inputs=[("run dir", run_dir)])
    meta = read_run_json(run_dir)
    rows = read_rows(run_dir)
    if rows.is_empty():
        raise UserError(f"{run_dir}: no sentences to export")
    config = meta["config"]
    taxonomy = taxonomy_facts(config.get("esco"))
    table = rows.join(taxonomy.pop("types"), on="skill_id", how="left").select(
        [pl.col(c) if c != "skill_type" else pl.col(c).fill_null("") for c in COLUMNS]).sort("skill_id", "sample_idx")
    out = output.location
    output.clear(only=EXPORT_FILES if output.holds == "own" else None)  # replace, never merge with an older export
    (out / DATA_FILE).write_parquet(table)
    facts = {
        "name": name or Path(str(run_dir).rstrip("/")).name,
        "rows": table.height,
        "skills": table["skill_id"].n_unique(),
        "failed_skills": read_failures(run_dir)["skill_id"].n_unique(),
        "ledger": ledger_totals(run_dir, config.get("unknown_outcome", "worst_case")).to_dict(),
        "taxonomy": taxonomy,
        "config": config,
        "fingerprint": meta.get("fingerprint"),
    }
    card = dataset_card(facts)
    (out / "README.md").write_text(card)
    return ExportResult(out, facts["rows"], facts["skills"], card)


def is_export(location: Location) -> bool:
    """An earlier export: its README.md is a card this module wrote."""
    card = location / "README.md"
    try:
        return card.exists() and CARD_TITLE in card.read_text()
    except (OSError, UnicodeDecodeError):
        return False


def taxonomy_facts(esco: str | None) -> dict[str, Any]:
    """The taxonomy the run read: file, version when it is the bundled copy, and skill types by id."""
    from skillgen.common.paths import BUNDLED_ESCO_FILE, BUNDLED_ESCO_VERSION
    from skillgen.common.taxonomy import load_skills, resolve_esco_path

    path = resolve_esco_path(esco)
    skills = load_skills(path)
    return {
        "file": path.name,
        "version": BUNDLED_ESCO_VERSION if path.name == BUNDLED_ESCO_FILE else "unknown (user-supplied file)",
        "skills_in_taxonomy": skills.height,
        "types": skills.select("skill_id", "skill_type"),
    }


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return label
    return "1M<n<10M"


def dataset_card(facts: dict[str, Any]) -> str:
    """README.md with the Hub's YAML metadata block, then the facts a reuser needs."""
    import yaml

    from skillgen.llm.prompts import AVOID_TEMPLATE, SYSTEM_PROMPT, USER_TEMPLATE

    config, tax, ledger = facts["config"], facts["taxonomy"], facts["ledger"]
    header = {
        "license": ESCO_LICENCE,
        "language": ["en"],
        "pretty_name": f"{CARD_TITLE} ({facts['name']})",
        "task_categories": ["sentence-similarity", "text-classification"],
        "tags": ["esco", "skill-extraction", "synthetic"],
        "size_categories": [size_category(facts["rows"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
        "dataset_info": {"features": [{"name": c, "dtype": "int32" if c == "sample_idx" else "string"} for c in COLUMNS],
                         "splits": [{"name": "train", "num_examples": facts["rows"]}]},
    }
    sampling = {k: config.get(k) for k in ("temperature", "top_p", "max_tokens", "adaptive_max_tokens")}
    sampling["run_seed"] = config.get("seed")  # each request's seed derives from it (skillgen.llm.client.request_seed)
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
        f"# {header['pretty_name']}", "",
        "Synthetic sentences as they might appear in job advertisements, each written for one skill of the",
        "ESCO taxonomy by a language model (the method of Decorte et al. 2023, arXiv 2307.10778), for training",
        "skill-extraction models. One row per sentence; `skill_id` is the ESCO concept URI.", "",
        "## Source", "",
        f"- Taxonomy: ESCO skills pillar, {tax['version']} (file `{tax['file']}`, {tax['skills_in_taxonomy']} skills), "
        "European Commission, licensed CC BY 4.0 (https://esco.ec.europa.eu). Labels and descriptions in the",
        "  prompts and the `label` column come from it; this dataset is shared under the same licence.",
        f"- Model: `{config.get('model')}` at `{_host(config.get('base_url', ''))}`",
        f"- Prompt version: `{config.get('prompt_version')}`; sentences per skill requested: {config.get('n_sentences')}; "
        f"alternative labels in the prompt: {config.get('include_alt_labels')} (at most {config.get('max_alt_labels')})",
        f"- Sampling: {json.dumps(sampling)}",
        f"- Response format: json_schema={config.get('json_schema')}, schema in `{config.get('json_schema_in', 'json_schema')}`",
        f"- Run fingerprint: `{facts['fingerprint']}`", "",
        "## Counts and cost", "",
        f"- Sentences: {facts['rows']} for {facts['skills']} skills; skills that ended with a failure record: {facts['failed_skills']}",
        f"- Requests: {ledger['attempts']} ({', '.join(f'{k}: {v}' for k, v in sorted(ledger['by_outcome'].items()))})",
        f"- Tokens reported by the server: {ledger['prompt_tokens']} prompt + {ledger['completion_tokens']} completion",
        f"- Cost: ${ledger['spent_usd']:.4f} by the run's ledger (unknown outcomes priced {ledger['policy']})", "",
        "## Prompt", "", "System message:", "", _quote(SYSTEM_PROMPT), "",
        "User message template (`{n}`, `{label}`, `{description}`, `{alt_labels}` filled per skill; `{avoid}` lists",
        "sentences already kept when a skill is re-requested):", "", _quote(USER_TEMPLATE), "",
        "Avoid block:", "", _quote(AVOID_TEMPLATE), "",
        "## Columns", "",
        "`skill_id` (ESCO URI), `label` (preferred label), `skill_type` (ESCO skillType), `sentence`,",
        "`sample_idx` (0..n-1 within the skill), `model`, `prompt_version`.", "",
        "## Load", "", "```python", "import polars as pl", "df = pl.read_parquet(\"data/*.parquet\")",
        "# or: datasets.load_dataset(\"parquet\", data_files=\"data/*.parquet\")", "```", "",
    ]
    return "\n".join(lines)


def _quote(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _host(url: str) -> str:
    """The endpoint's host only: a private server's path is nobody's business, and a URL never carries a key."""
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or "unknown"
