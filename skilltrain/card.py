"""The model card: ``README.md`` in a model dir, so a model handed on says what made it and what it scores.

Hugging Face / sentence-transformers layout: a YAML header (``library_name``, ``pipeline_tag``, ``tags``,
``base_model``, ``license``, ``datasets`` and ``model-index``, which the Hub renders as the evaluation
table), then Markdown: the base encoder and its licence, the training data (run dir, taxonomy, generator,
prompt version, counts, the data report's headline numbers), the recipe and the scoring, the test scores
with their 95% intervals next to the zero-shot start model, usage, and the data's licences.

Every fact comes from what the model dir already records (``skilltrain_config.json``,
``eval_results.json``, ``skilltrain_scoring.json``) and from the training data's ``run.json``; the
caller adds what only it knows (the pipeline: the zero-shot baseline and the data report). Nothing is
recomputed, so the card's scores are ``eval_results.json``'s. ``fit`` writes the card, and the pipeline
rewrites it once it knows more, on local disk or object storage alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillgen.common import Location, UserError, resolve
from skilltrain.model import DEFAULT_MODEL_ID, EVAL_RESULTS_FILE, MODEL_NAMES, TRAINING_CONFIG_FILE, default_model_dir
from skilltrain.scoring import SCORING_FILE

CARD_FILE = "README.md"
METRICS = ("RP@1", "RP@5", "RP@10", "MRR")
SCORING_NOTES = {  # what a scoring field means; fields not named here are listed as they are
    "scoring": "how a sentence meets a skill",
    "attention_temperature": "attention temperature T",
    "exclude_special_tokens": "[CLS]/[SEP] left out of the attended tokens",
    "diverse": "coverage-aware top-k by default (`--diverse`; chosen on validation)",
    "diversity": "coverage-aware top-k strength (near-synonym penalty; chosen on validation)",
}


@dataclass(frozen=True)
class BaseEncoder:
    """The encoder training started from."""

    name: str  # a Hub id where known (the bundled MiniLM, named encoders), else the directory's name
    licence: str  # as its own card's YAML header states it; "unknown" without one


@dataclass(frozen=True)
class CardFacts:
    """Everything the card states, gathered once; :func:`model_card` only formats it."""

    name: str  # the model dir's name
    config: dict[str, Any]  # skilltrain_config.json
    evaluation: dict[str, Any]  # eval_results.json
    scoring: dict[str, Any]  # skilltrain_scoring.json: every field, whatever this version of ScoringConfig holds
    base: BaseEncoder
    generation: dict[str, Any]  # the config in the training data's run.json ({} when unreadable)
    baseline: dict[str, Any] | None = None  # the zero-shot start model's test scores, keyed like eval_results' "test"
    data_report: dict[str, Any] | None = None  # `skillgen report`'s headline numbers


def write_card(
    model_dir: str | Path | Location, baseline: dict | None = None, data_report: dict | None = None, name: str | None = None,
) -> str:
    """(Re)write ``README.md`` of a model dir (a path or URI) from what it records; returns the card.

    ``name``: the model's name when ``model_dir`` is a staging folder (default: the folder's name).
    """
    where = resolve(model_dir)
    card = model_card(gather(where, baseline, data_report, name))
    (where / CARD_FILE).write_text(card)
    return card


def gather(model_dir: Location, baseline: dict | None = None, data_report: dict | None = None, name: str | None = None) -> CardFacts:
    config = _read_json(model_dir / TRAINING_CONFIG_FILE)
    return CardFacts(
        name=name or model_dir.name,
        config=config,
        evaluation=_read_json(model_dir / EVAL_RESULTS_FILE),
        scoring=_read_json(model_dir / SCORING_FILE) or {"scoring": "pooled"},
        base=base_encoder(config.get("model"), config.get("resolved_model")),
        generation=_run_config(config.get("data")),
        baseline=baseline,
        data_report=data_report,
    )


def _read_json(location: Location) -> dict[str, Any]:
    try:
        return json.loads(location.read_text()) if location.exists() else {}
    except (OSError, ValueError):
        return {}


def _run_config(data: str | None) -> dict[str, Any]:
    """The generation config in the training data's run.json ({} for a run dir without one)."""
    if not data:
        return {}
    try:
        return _read_json(resolve(data) / "run.json").get("config", {})
    except (UserError, OSError, ValueError):
        return {}


def base_encoder(given: str | None, resolved: str | None) -> BaseEncoder:
    """Name and licence of the start encoder: the bundled MiniLM, a named encoder's pin, else its own card."""
    path = Path(resolved) if resolved else default_model_dir()
    licence = str(front_matter(path / CARD_FILE).get("license") or "unknown")
    if given in (None, "minilm") or path.resolve() == default_model_dir().resolve():
        return BaseEncoder(DEFAULT_MODEL_ID, licence)
    if given in MODEL_NAMES:
        from skilltrain.encoders.named import NamedModel

        named = NamedModel.load(given)
        return BaseEncoder(named.model, licence if licence != "unknown" else named.licence.lower())
    return BaseEncoder(path.name, licence)


def front_matter(card: Path) -> dict[str, Any]:
    """The YAML header of a model card, {} when there is none."""
    import yaml

    try:
        text = card.read_text(encoding="utf-8")
    except OSError:
        return {}
    if not text.startswith("---"):
        return {}
    try:
        header = yaml.safe_load(text[3:].split("\n---", 1)[0])
    except yaml.YAMLError:
        return {}
    return header if isinstance(header, dict) else {}


# ---- the card ---------------------------------------------------------------------


def model_card(facts: CardFacts) -> str:
    import yaml

    lines = ["---", yaml.safe_dump(header(facts), sort_keys=False).rstrip(), "---", ""]
    lines += [f"# ESCO skill extraction: {facts.name}", ""]
    lines += [
        f"A bi-encoder that ranks ESCO skills for job-ad sentences, fine-tuned from `{facts.base.name}` on",
        "synthetic job-ad sentences written by a language model for each skill (the method of Decorte et al. 2023,",
        "arXiv 2307.10778), by esco-skillgen's `skilltrain fit`.", "",
    ]
    for section in (base_section, data_section, recipe_section, scoring_section, scores_section, usage_section, licence_section):
        lines += section(facts) + [""]
    return "\n".join(lines)


def header(facts: CardFacts) -> dict[str, Any]:
    """The Hub's metadata block; ``model-index`` holds the test scores exactly as eval_results.json has them."""
    data_name = Path(str(facts.config.get("data") or "unknown").rstrip("/")).name
    return {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "sentence-similarity", "feature-extraction", "esco", "skill-extraction", "skilltrain"],
        "base_model": facts.base.name,
        "license": facts.base.licence if facts.base.licence != "unknown" else "other",
        "language": ["en"],
        "datasets": [data_name],
        "model-index": [{"name": facts.name, "results": [_result(name, scores) for name, scores in reported_scores(facts).items()]}],
    }


def reported_scores(facts: CardFacts) -> dict[str, dict[str, Any]]:
    return facts.evaluation.get("test") or {}


def _result(name: str, scores: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": {"type": "information-retrieval", "name": "ESCO skill extraction (rank every skill of the taxonomy)"},
        "dataset": {"name": name.upper(), "type": name, "split": "test"},
        "metrics": [{"type": m.lower(), "value": scores[m], "name": m} for m in METRICS if m in scores],
    }


def base_section(facts: CardFacts) -> list[str]:
    return [
        "## Base encoder", "",
        f"- `{facts.base.name}`, licence {facts.base.licence}" + (f" (started from `{facts.config['resolved_model']}`)"
                                                                 if facts.config.get("resolved_model") else ""),
        "- The fine-tuned weights inherit the base encoder's licence; the training data's licences follow below.",
    ]


def data_section(facts: CardFacts) -> list[str]:
    gen, info = facts.generation, facts.config.get("data_info", {})
    lines = ["## Training data", "", f"- Run dir: `{facts.config.get('data', 'unknown')}`"]
    if gen:
        lines += [
            f"- Taxonomy: {taxonomy_text(gen.get('esco'))}",
            f"- Generator model: `{gen.get('model')}`; prompt version `{gen.get('prompt_version')}`; "
            f"{gen.get('n_sentences')} sentences requested per skill; temperature {gen.get('temperature')}",
        ]
    else:
        lines.append("- The run dir has no readable run.json: taxonomy, generator and prompt are not recorded")
    if info:
        lines.append(f"- Trained on {info.get('generated', info.get('pairs'))} generated sentences (after de-duplication)"
                     f"{_taxonomy_pairs(info)} over {info.get('skills')} skills")
    if facts.data_report:
        lines += ["", "Data report (`skillgen report`), headline numbers (percent of sentences unless named otherwise):", "",
                  "| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in facts.data_report.items()]
    else:
        lines.append(f"- Data report: not recorded here; `skillgen report {facts.config.get('data', 'RUN_DIR')}` prints it")
    return lines


def _taxonomy_pairs(info: dict[str, Any]) -> str:
    extra = info.get("pairs", 0) - info.get("generated", info.get("pairs", 0))
    return f" plus {extra} taxonomy pairs (alternative label / description -> label)" if extra > 0 else ""


def taxonomy_text(esco: str | None) -> str:
    from skillgen.common import is_bundled_esco, manifest, resolve_esco_path

    try:
        path = resolve_esco_path(esco)
    except UserError:
        return f"`{esco}` (not found on this machine)"
    if is_bundled_esco(path):
        entry = next(e for e in manifest()["files"] if e["kind"] == "esco_skills")
        return f"{entry['name']} {entry['version']} ({entry['rows']:,} skills, bundled with skillgen)"
    return f"`{path.name}` (a user-supplied file; its ESCO version is not recorded)"


def recipe_section(facts: CardFacts) -> list[str]:
    cfg, info, ev = facts.config, facts.config.get("data_info", {}), facts.evaluation
    lines = [
        "## Training recipe", "",
        f"- Symmetric InfoNCE (scale {cfg.get('scale')}) over in-batch negatives gathered from all workers; global batch "
        f"{cfg.get('workers', 1) * cfg.get('batch_size', 0)} ({cfg.get('workers')} workers x {cfg.get('batch_size')})",
        f"- {info.get('total_steps', '?')} steps ({cfg.get('epochs')} epoch(s)), AdamW lr {cfg.get('lr')}, warm-up {cfg.get('warmup_ratio')}, "
        f"weight decay {cfg.get('weight_decay')}, max sequence length {cfg.get('max_seq_length') or 'as the base'}, seed {cfg.get('seed')}",
        f"- Partner sentences joined with probability {cfg.get('augment_prob')}; hard negatives {cfg.get('hard_negatives') or 'off'}; "
        f"taxonomy pairs {'on' if cfg.get('taxonomy_pairs') else 'off'}; trained with `{cfg.get('scoring', 'pooled')}` scoring",
    ]
    if ev.get("validation"):
        val = ", ".join(f"{k[4:-4].upper()} {v:.2f}" for k, v in ev["validation"].items() if k != "val_rp5")
        lines.append(f"- Exported checkpoint: step {ev.get('best_step')}, best validation RP@5 {ev['validation'].get('val_rp5', 0):.2f} ({val})")
    if ev.get("weight_average"):
        lines.append(f"- Weights averaged with the start model, alpha {ev['weight_average']['alpha']} (chosen on validation)")
    return lines


def scoring_section(facts: CardFacts) -> list[str]:
    scoring = facts.scoring
    lines = ["## Scoring", "", f"Saved in `{SCORING_FILE}` and read by `skilltrain eval`, `SkillExtractor` and `skilltrain extract`:", ""]
    lines += [f"- {SCORING_NOTES.get(k) or _candidate_note(k)}: `{v}`" for k, v in scoring.items()]
    chosen = facts.evaluation.get("attention_temperature")
    if chosen and scoring.get("scoring") == "token_attention":
        tried = ", ".join(f"{t}: {v:.2f}" for t, v in chosen.get("val_rp5_by_temperature", {}).items())
        lines.append(f"- The temperature was chosen on validation (RP@5 by temperature: {tried})")
    if scoring.get("scoring") == "token_attention":
        lines.append("- Token attention (ConTeXT-match): each skill attends to the sentence's tokens, "
                     "`score = sum_t softmax_t(x_t . s / T) * cos(x_t, s)`")
    else:
        lines.append("- Pooled: a sentence is one mean-pooled unit vector, its score the cosine with the skill's; "
                     "the other fields apply to token attention only")
    return lines


def _candidate_note(key: str) -> str:
    if "candidate" in key:
        return "candidate count C (skills the pooled index shortlists for token attention to re-rank)"
    return key.replace("_", " ")


def scores_section(facts: CardFacts) -> list[str]:
    scores = reported_scores(facts)
    if not scores:
        return ["## Test scores", "", "Not evaluated: no TECH/HOUSE test files were found when this model was trained."]
    lines = [
        "## Test scores", "",
        "TECH and HOUSE test splits (Decorte et al. 2022), ranking every skill of the taxonomy for each sentence; percent,",
        "95% bootstrap interval in brackets" + (", the zero-shot start model below each set." if facts.baseline else "."), "",
        "| set | model | n | " + " | ".join(METRICS) + " |", "|---|---|---|" + "---|" * len(METRICS),
    ]
    for name, result in scores.items():
        lines.append(_score_row(name, "this model", result))
        if facts.baseline and name in facts.baseline:
            lines.append(_score_row(name, "zero-shot", facts.baseline[name]))
    if not facts.baseline:
        lines += ["", "The zero-shot start model's scores are not recorded here (the pipeline adds them; "
                  f"`skilltrain eval --model {facts.config.get('model') or 'minilm'} --split test` measures them)."]
    return lines


def _score_row(name: str, model: str, scores: dict[str, Any]) -> str:
    cells = []
    for metric in METRICS:
        cell = f"{scores[metric]:.2f}" if metric in scores else "-"
        if metric in scores.get("ci95", {}):
            lo, hi = scores["ci95"][metric]
            cell += f" [{lo:.2f}, {hi:.2f}]"
        cells.append(cell)
    return f"| {name.upper()} | {model} | {scores.get('n', '-')} | " + " | ".join(cells) + " |"


def usage_section(facts: CardFacts) -> list[str]:
    token_level = facts.scoring.get("scoring") == "token_attention"
    plain = ("scores pooled (one mean-pooled vector per sentence, cosine with the skill's), not with this model's "
             "token attention: the test scores above need `SkillExtractor` or `skilltrain`." if token_level else
             "scores pooled, as this model was tested.")
    return [
        "## Usage", "",
        "With skilltrain (`pip install esco-skillgen`), ranking with the saved scoring:", "",
        "```python", "from skilltrain import SkillExtractor", "",
        f'extractor = SkillExtractor.from_pretrained("path/to/{facts.name}")  # this directory',
        'for doc in extractor.extract(["You will maintain our Kubernetes clusters.\\n- Fluent German"], top_k=5):',
        "    for sentence in doc.sentences:",
        "        print(sentence.sentence, [(s.label, round(s.score, 3)) for s in sentence.skills])", "```", "",
        "Command line: `skilltrain extract --model path/to/" + facts.name + " \"5+ years of Python\"`.", "",
        f"With plain sentence-transformers, which {plain}", "",
        "```python", "from sentence_transformers import SentenceTransformer", "",
        f'model = SentenceTransformer("path/to/{facts.name}")',
        'embeddings = model.encode(["You will maintain our Kubernetes clusters.", "administer Kubernetes"])',
        "print(model.similarity(embeddings[:1], embeddings[1:]))", "```",
    ]


def licence_section(facts: CardFacts) -> list[str]:
    from skillgen.common import manifest

    lines = ["## Licences and attribution", "", f"- Base encoder `{facts.base.name}`: {facts.base.licence}"]
    seen = set()
    for entry in manifest()["files"]:
        key = entry["kind"]
        if key in seen:
            continue
        seen.add(key)
        what = "ESCO taxonomy (labels in the training data)" if key == "esco_skills" else "TECH/HOUSE benchmarks (the test scores)"
        lines.append(f"- {what}: {entry['licence']}; {entry['attribution']}; {entry['source']}")
    lines.append("- The synthetic training sentences are derived from ESCO's labels and descriptions and shared under ESCO's licence.")
    return lines
