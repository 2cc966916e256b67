"""The model card (skilltrain/card.py) and the model files' permissions, issue 29.

The model dirs here are exported the way ``fit`` exports one (``save_model``: weights, the training
config, the evaluation results measured for real on fixture benchmarks, the card) from tiny encoders,
so the card is checked without a training run; tests/test_train_fit.py and the pipeline tests check the
cards that real runs write.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from helpers.card import check_card

from conftest import synthetic_skill_rows, write_benchmarks, write_esco_csv
from helpers.quality_fixture import build_run_dir


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_encoder_dir) -> dict:
    """A generation run dir with a real run.json, fixture benchmarks, and test scores of two tiny encoders."""
    import torch

    from skillgen.common import load_skills
    from skilltrain.evaluation.evaluate import evaluate, load_benchmarks, results_json
    from skilltrain.model import BiEncoder

    base = tmp_path_factory.mktemp("card")
    build_run_dir(base / "gen")
    rows = synthetic_skill_rows(12)
    esco = write_esco_csv(base / "skills_en.csv", rows)
    bench = write_benchmarks(base / "bench", [r[1] for r in rows[:6]])
    skills = load_skills(esco)
    benchmarks = load_benchmarks(skills, ("tech", "house"), "test", bench)
    trained = BiEncoder.from_pretrained(tiny_encoder_dir)
    torch.manual_seed(1)
    with torch.no_grad():  # other weights, standing in for trained ones
        for param in trained.parameters():
            param.add_(0.05 * torch.randn_like(param))
    scores = lambda encoder: results_json(evaluate(encoder, skills, benchmarks, ci=True))  # noqa: E731
    return {"base": base, "gen": base / "gen", "esco": esco, "bench": bench, "encoder": trained,
            "test": scores(trained), "baseline": scores(BiEncoder.from_pretrained(tiny_encoder_dir))}


def export(inputs: dict, tiny_encoder_dir: Path, out, **config) -> None:
    """What fit() does after training: save_model with the training config and eval_results.json."""
    from skilltrain.config import TrainConfig
    from skilltrain.training.fit import save_model

    cfg = TrainConfig(data=inputs["gen"], out=out, model=tiny_encoder_dir, esco=inputs["esco"],
                      benchmark_dir=inputs["bench"], taxonomy_pairs=True, **config)
    training_config = {**cfg.to_json(), "resolved_model": str(tiny_encoder_dir), "best_step": 4,
                       "data_info": {"pairs": 14, "generated": 11, "skills": 3, "total_steps": 4}}
    eval_results = {"best_step": 4, "validation": {"val_tech_rp5": 50.0, "val_house_rp5": 40.0, "val_rp5": 45.0},
                    "test": inputs["test"]}
    inputs["encoder"].scoring = cfg.saved_scoring_config()
    save_model(inputs["encoder"], out, training_config=training_config, eval_results=eval_results)


def test_fit_export_carries_a_card_with_its_own_scores_and_provenance(inputs, tiny_encoder_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "esco-tiny"
    export(inputs, tiny_encoder_dir, out)
    text = check_card(out)  # header and table = eval_results.json; no zero-shot rows without a baseline
    assert "# ESCO skill extraction: esco-tiny" in text
    assert f"Run dir: `{inputs['gen']}`" in text
    assert "Generator model: `smollm2`; prompt version `v1`; 4 sentences requested per skill" in text
    assert "ESCO skills pillar (English) v1.1.0 (13,896 skills" in text  # the run generated from the bundled ESCO
    assert "11 generated sentences (after de-duplication) plus 3 taxonomy pairs" in text and "over 3 skills" in text
    assert "step 4, best validation RP@5 45.00 (TECH 50.00, HOUSE 40.00)" in text
    assert f"skillgen report {inputs['gen']}" in text  # fit has no data report: the card says where to get it
    assert text.count("CC BY 4.0") == 2  # ESCO, and TECH/HOUSE
    assert 'SkillExtractor.from_pretrained("path/to/esco-tiny")' in text and 'SentenceTransformer("path/to/esco-tiny")' in text
    assert "scores pooled, as this model was tested" in text
    model = SentenceTransformer(str(out), device="cpu")  # the card does not get in a loader's way
    assert model.encode(["weld pipes"]).shape == (1, 32)


def test_pipeline_rewrite_adds_the_baseline_and_the_data_report(inputs, tiny_encoder_dir, tmp_path):
    from skillgen.quality import quality_report
    from skilltrain.card import write_card

    out = tmp_path / "model"
    export(inputs, tiny_encoder_dir, out)
    headline = quality_report(inputs["gen"]).headline()
    write_card(out, baseline=inputs["baseline"], data_report=headline)
    text = check_card(out, baseline=inputs["baseline"])
    assert "skillgen report" in text and "not recorded here" not in text.split("## Training recipe")[0]
    for key, value in headline.items():
        assert f"| {key} | {value} |" in text


def test_token_attention_card_lists_every_scoring_field_and_says_plain_use_is_pooled(inputs, tiny_encoder_dir, tmp_path):
    out = tmp_path / "model"
    export(inputs, tiny_encoder_dir, out, saved_scoring="token_attention", attention_temperature=2.0)
    text = check_card(out)
    scoring = json.loads((out / "skilltrain_scoring.json").read_text())
    assert scoring["scoring"] == "token_attention" and "attention temperature T: `2.0`" in text
    section = text.split("## Scoring")[1].split("##")[0]
    for value in scoring.values():  # whatever ScoringConfig holds (a candidate count, once two-stage ranking lands)
        assert f"`{value}`" in section
    assert "scores pooled (one mean-pooled vector per sentence" in text and "not with this model's token attention" in text


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_model_files_get_the_mode_the_umask_gives_every_file(inputs, tmp_path, umask, mode):
    """safetensors writes model.safetensors 0600 on its own: a shared volume's other users could not read the weights."""
    previous = os.umask(umask)
    try:
        inputs["encoder"].save(tmp_path / "model")
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "model").rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(mode) for p in files}


def test_card_is_kept_on_object_storage_and_rewritten_there(inputs, tiny_encoder_dir, s3_bucket, tmp_path):
    from skillgen.common.storage import resolve
    from skilltrain.card import write_card

    export(inputs, tiny_encoder_dir, f"{s3_bucket}/models/esco-s3")
    write_card(f"{s3_bucket}/models/esco-s3", baseline=inputs["baseline"])
    copy = tmp_path / "copy"
    resolve(f"{s3_bucket}/models/esco-s3").download_dir(copy)
    text = check_card(copy, baseline=inputs["baseline"])
    assert "# ESCO skill extraction: esco-s3" in text  # named after the model, not the upload's staging folder
