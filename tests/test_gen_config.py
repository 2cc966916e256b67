"""Config validation, TOML loading, fingerprints, prices and the offline estimate."""

import json
from pathlib import Path

import pytest

from conftest import synthetic_skill_rows, write_esco_csv
from skillgen.config import GenerationConfig, load_config
from skillgen.common.errors import UserError
from skillgen.cost_estimate import estimate
from skillgen.llm.pricing import price_for


def test_bad_values_name_the_field():
    with pytest.raises(UserError, match="tpm"):
        load_config(None, {"tpm": -5})
    with pytest.raises(UserError, match="rpm"):
        load_config(None, {"rpm": 0})
    with pytest.raises(UserError, match="unknown field"):
        load_config(None, {"bogus": 1})
    with pytest.raises(UserError, match="api_key_env"):
        load_config(None, {"api_key_env": "sk-abcdefabcdef"})


def test_toml_sections_and_overrides(tmp_path: Path):
    f = tmp_path / "gen.toml"
    f.write_text('[endpoint]\nmodel = "gpt-4o"\nbase_url = "http://localhost:1/v1"\n[limits]\ntpm = 1000\nrpm = 10\n'
                 '[data]\nlimit = 5\n')
    cfg = load_config(f, {"rpm": 20, "tpm": None})
    assert cfg.model == "gpt-4o" and cfg.tpm == 1000 and cfg.rpm == 20 and cfg.limit == 5
    f.write_text("[nope]\nx = 1\n")
    with pytest.raises(UserError, match="unknown section"):
        load_config(f)


def test_fingerprint_covers_outputs_only():
    a = GenerationConfig(model="gpt-4o-mini")
    assert a.fingerprint() == GenerationConfig(model="gpt-4o-mini", tpm=5, spend_cap_usd=1, workers=3).fingerprint()
    assert a.fingerprint() != GenerationConfig(model="gpt-4o").fingerprint()
    assert a.fingerprint() != GenerationConfig(temperature=0.2).fingerprint()
    assert a.fingerprint() != GenerationConfig(n_sentences=5).fingerprint()


def test_prices():
    assert price_for("gpt-4o-mini").input_per_1m == 0.15
    assert price_for("gpt-4o-mini-2024-07-18").output_per_1m == 0.60
    assert price_for("gpt-4o-2024-08-06").input_per_1m == 2.5  # longest prefix wins over gpt-4o-mini? no: gpt-4o
    assert price_for("simulator").input_per_1m == 0.0
    for m in ["gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-3.5-turbo"]:
        assert price_for(m).output_per_1m > 0
    with pytest.raises(UserError, match="no price"):
        price_for("my-llama")
    assert price_for("my-llama", input_per_1m=1, output_per_1m=2).output_per_1m == 2
    assert price_for("simulator", input_per_1m=3.0).input_per_1m == 3.0


def test_price_override_file(tmp_path: Path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"my-llama": {"input": 0.1, "output": 0.2}, "gpt-4o": {"input": 9, "output": 9}}))
    assert price_for("my-llama", f).input_per_1m == 0.1
    assert price_for("gpt-4o", f).input_per_1m == 9
    f.write_text(json.dumps({"x": {"input": -1, "output": 1}}))
    with pytest.raises(UserError, match="negative"):
        price_for("x", f)


def test_offline_estimate(tmp_path: Path):
    from skillgen.llm.tokens import count_tokens
    from skillgen.llm.prompts import build_messages
    from skillgen.common.taxonomy import iter_skills, load_skills

    csv = write_esco_csv(tmp_path / "s.csv", synthetic_skill_rows(12))
    cfg = GenerationConfig(esco=str(csv), model="gpt-4o-mini", n_sentences=5, max_tokens=400, tpm=60000, rpm=600)
    est = estimate(cfg)
    skills = list(iter_skills(load_skills(csv)))
    expected = sum(count_tokens("gpt-4o-mini", build_messages(s, 5)) for s in skills)
    assert est.requests == 12 and est.prompt_tokens == expected
    assert est.completion_tokens == 12 * 400
    assert est.cost_usd == pytest.approx((expected * 0.15 + 4800 * 0.6) / 1e6)
    assert est.cost_batch_usd == pytest.approx(est.cost_usd / 2)
    assert est.duration_s == pytest.approx((expected + 4800) / 60000 * 60)
    assert "Batch API" in est.format()
    with pytest.raises(UserError, match="no price"):
        estimate(cfg.model_copy(update={"model": "mystery"}))


def test_config_refuses_places_where_a_secret_would_be_written_to_run_json():
    from skillgen.config import make_config
    from skillgen.common.errors import UserError

    for values in ({"base_url": "https://user:s3cret@llm.example/v1"}, {"base_url": "https://llm.example/v1?api-key=s3cret"},
                   {"api_key_env": "gsk_s3cret-value"}):
        with pytest.raises(UserError) as info:
            make_config(values)
        assert "s3cret" not in str(info.value)


def test_schema_inside_json_object_for_llama_cpp_python_and_old_fingerprints_unchanged():
    from skillgen.llm.prompts import RESPONSE_SCHEMA

    default = GenerationConfig()
    assert default.request_response_format()["type"] == "json_schema"
    llama = GenerationConfig(json_schema_in="json_object")
    assert llama.request_response_format() == {"type": "json_object", "schema": RESPONSE_SCHEMA}
    assert GenerationConfig(response_format=False).request_response_format() is None
    # the default leaves output_fields as before the option existed (run dirs keep resuming) ...
    assert "json_schema_in" not in default.output_fields()
    # ... and the other placement is another output format, so another fingerprint
    assert llama.fingerprint() != default.fingerprint()
