"""End to end on Ray Train: a tiny 2-worker fit, failure + resume, bad input, the CLI."""

from __future__ import annotations

import json
import stat
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import helpers.training
from helpers.card import check_card
from helpers.training import N_SKILLS, fail_once_before_report, inputs, make_config  # noqa: F401  (module fixture)

from helpers.ports import free_ports
from helpers.promscrape import METRICS_SYSTEM_CONFIG, Scraper, exported, finite, metrics_url

from skillgen.common.errors import UserError


@pytest.fixture(scope="module")
def ray_local():
    import ray

    # own instance; dashboard on: Ray Train's PG cleaner needs the State API; a known Prometheus port for the scrape
    ray.init(address="local", num_cpus=2, log_to_driver=False, _metrics_export_port=free_ports(1)[0],
             _system_config=METRICS_SYSTEM_CONFIG)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def baseline(ray_local, inputs, tiny_encoder_dir, tmp_path_factory):
    from skilltrain.training.fit import fit

    tmp = tmp_path_factory.mktemp("baseline")
    cfg = make_config(inputs, tiny_encoder_dir, tmp)
    with Scraper(metrics_url(), (exported("skilltrain_"),)) as scraper:  # what Prometheus would see during the fit
        result = fit(cfg)
    result.extra["config"] = cfg
    result.extra["scraper"] = scraper
    return result


def test_prometheus_scrape_during_the_fit_shows_the_skilltrain_gauges(baseline):
    scraper = baseline.extra["scraper"]
    run = {"run": baseline.extra["config"].run_name}
    steps = scraper.series(exported("skilltrain_step"), **run)
    assert steps, f"no skilltrain_step in {scraper.scrapes} scrapes during the fit ({scraper.errors[:2]})"
    total = baseline.history[-1]["step"]
    assert all(1 <= s.value <= total for s in steps)
    for name in ("skilltrain_loss", "skilltrain_samples_per_s"):
        values = [s.value for s in scraper.series(exported(name), **run)]
        assert values and all(finite(v) and v > 0 for v in values), (name, values)
    logged_losses = {h["step"]: h["loss"] for h in baseline.history if "loss" in h}
    seen = {s.value for s in steps}
    assert seen <= set(logged_losses), (seen, sorted(logged_losses))  # published at logged steps only


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_tiny_two_worker_fit_exports_a_sentence_transformers_model(baseline, inputs):
    from sentence_transformers import SentenceTransformer

    from skilltrain.cli import main as cli_main
    from skilltrain.model import current_umask

    result = baseline
    steps = (N_SKILLS * 3) // 8
    assert steps - 1 <= result.history[-1]["step"] <= steps
    validations = [h for h in result.history if "val_rp5" in h]  # the history also keeps every logged step
    assert [h["step"] for h in validations][:2] == [4, 8]
    assert validations[-1]["step"] == result.history[-1]["step"]
    best = max(validations, key=lambda h: (h["val_rp5"], h["step"]))
    assert result.best_step == best["step"]
    assert result.best_metrics["val_rp5"] == pytest.approx(best["val_rp5"])
    out = result.out_dir
    saved = json.loads((out / "skilltrain_config.json").read_text())
    assert saved["workers"] == 2 and saved["batch_size"] == 4 and saved["best_step"] == result.best_step
    evals = json.loads((out / "eval_results.json").read_text())
    assert set(evals["test"]) == {"tech", "house"} and evals["best_step"] == result.best_step

    assert len(result.losses) == result.history[-1]["step"] and all(np.isfinite(result.losses))
    for h in result.history:  # every step's loss, the logged steps' among them
        assert result.losses[h["step"] - 1] == pytest.approx(h["loss"], abs=1e-6)
    check_card(out)  # the card's header and table state eval_results.json's test scores
    umask = current_umask()
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask for p in out.rglob("*") if p.is_file())

    st = SentenceTransformer(str(out), device="cpu")
    emb = st.encode(["operate welding systems 0"])
    assert emb.shape == (1, 32) and abs(np.linalg.norm(emb) - 1) < 1e-4
    code = cli_main(["eval", "--model", str(out), "--esco", str(inputs["esco"]), "--benchmark-dir", str(inputs["bench"])])
    assert code == 0


@pytest.mark.slow  # ~35 s: a second 2-worker fit; .ci/run runs it (and test_train_s3.py the same on S3)
def test_worker_failure_resumes_from_checkpoint_and_matches_uninterrupted_run(baseline, inputs, tiny_encoder_dir, tmp_path):
    import ray.cloudpickle

    from skilltrain.training.fit import fit
    from skilltrain.training.train import train_loop_per_worker

    ray.cloudpickle.register_pickle_by_value(helpers.training)  # the workers cannot import the test helpers
    marker = tmp_path / "injected_failure"
    loop = partial(train_loop_per_worker, report=partial(fail_once_before_report, marker=str(marker), at_step=8))
    cfg = make_config(inputs, tiny_encoder_dir, tmp_path, max_failures=1)
    result = fit(cfg, train_loop=loop)
    assert marker.exists()
    assert result.extra["resumed_at_steps"] == [4]  # restarted from the step-4 checkpoint, not from scratch
    assert baseline.extra["resumed_at_steps"] == []
    assert [h["step"] for h in result.history] == [h["step"] for h in baseline.history]
    for got, want in zip(result.history, baseline.history):
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-4)
    assert result.losses == pytest.approx(baseline.losses, abs=1e-4)  # every step's loss survives the restart
    assert result.best_step == baseline.best_step
    a, b = _weights(result.out_dir), _weights(baseline.out_dir)
    diff = max((a[k] - b[k]).abs().max().item() for k in b)
    assert diff < 1e-4, diff


def test_bad_inputs_fail_before_training(inputs, tmp_path, tiny_encoder_dir):
    """No Ray needed: everything is checked by prepare() before a worker starts."""
    from skilltrain.training.fit import fit

    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text("{}")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    cases = [
        (dict(data=tmp_path / "missing"), "does not exist"),
        (dict(data=empty), "no shards"),
        (dict(model=not_a_model), "not an encoder directory"),
        (dict(batch_size=16), "exceeds the 24 distinct skills"),
        (dict(esco=tmp_path / "nope.csv"), "does not exist"),
    ]
    for overrides, message in cases:
        with pytest.raises(UserError, match=message) as info:
            fit(make_config(inputs, tiny_encoder_dir, tmp_path, **overrides))
        assert "\n" not in str(info.value)


def test_cli_help_and_one_line_errors(tmp_path, capsys):
    from skilltrain.cli import main as cli_main

    with pytest.raises(SystemExit):
        cli_main(["fit", "--help"])
    text = capsys.readouterr().out
    for flag in ("--data", "--out", "--workers", "--batch-size", "--epochs", "--gradcache-chunk", "--augment-prob", "--eval-every"):
        assert flag in text
    code = cli_main(["fit", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "does not exist" in err
    code = cli_main(["fit", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--workers", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--workers" in err


@pytest.mark.slow  # ~25 s: a second fit; the worker-failure test also resumes from a checkpoint; .ci/run runs it (the default suite stays under 6 min)
def test_rerun_with_same_name_resumes_instead_of_retraining(baseline):
    from skilltrain.training.fit import fit

    cfg = baseline.extra["config"]
    again = fit(cfg.model_copy(update={"out": cfg.out.with_name("model_again"), "name": cfg.run_name}))
    last = baseline.history[-1]["step"]
    assert again.extra["resumed_at_steps"] == [last]
    assert again.history == baseline.history and again.best_step == baseline.best_step
    a, b = _weights(again.out_dir), _weights(baseline.out_dir)
    assert all((a[k] == b[k]).all() for k in b)


@pytest.mark.slow
def test_token_attention_fit_saves_its_scoring_and_temperature(ray_local, inputs, tiny_encoder_dir, tmp_path):
    """Ray Train with the token-attention loss (GradCache on), temperature, C and the coverage default chosen on
    validation, saved with the model."""
    from skilltrain.model import BiEncoder
    from skilltrain.training.fit import fit

    cfg = make_config(inputs, tiny_encoder_dir, tmp_path, scoring="token_attention", attention_temperature=3.0,
                      attention_temperatures=[0.5, 10.0], gradcache_chunk=2, max_steps=4, eval_every=100)
    result = fit(cfg)
    evals = json.loads((result.out_dir / "eval_results.json").read_text())
    by_t = evals["attention_temperature"]["val_rp5_by_temperature"]
    assert set(by_t) == {"0.5", "3.0", "10.0"}
    saved = BiEncoder.from_pretrained(result.out_dir).scoring
    assert saved.token_level and by_t[str(saved.attention_temperature)] == max(by_t.values())
    # two-stage ranking's C and the coverage-aware top-k's default, chosen on validation after the temperature
    assert saved.candidates == evals["candidates"]["candidates"] and evals["candidates"]["validation_curve"][0]["candidates"] is None
    assert (saved.diverse, saved.diversity) == (evals["diversity"]["diverse"], evals["diversity"]["strength"])
    assert [h["step"] for h in result.history if "val_rp5" in h] == [4]  # one validation, at the end


def test_saved_scoring_defaults_to_the_training_scoring(inputs, tiny_encoder_dir, tmp_path):
    pooled = make_config(inputs, tiny_encoder_dir, tmp_path)
    assert pooled.saved_scoring_config() == pooled.scoring_config() and not pooled.scoring_config().token_level
    mixed = make_config(inputs, tiny_encoder_dir, tmp_path, saved_scoring="token_attention", attention_temperature=2.0)
    assert not mixed.scoring_config().token_level
    assert mixed.saved_scoring_config().token_level and mixed.saved_scoring_config().attention_temperature == 2.0
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        make_config(inputs, tiny_encoder_dir, tmp_path, attention_temperatures=[0.0])
