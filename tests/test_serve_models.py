"""Serving a token-attention model from object storage (slow): the model dir on a real S3 server (SeaweedFS).

The replica fetches ``s3://`` into the node's cache and ranks with token attention (ConTeXT-match) on
the default CPU backend; answers must equal ``SkillExtractor.extract`` on the same files, and
``GET /v1/model`` must report the URI and the token-attention scoring.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.serve import ADS, assert_same_results, client, expected_results, serving

TEMPERATURE = 0.5


@pytest.fixture(scope="module")
def token_model_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skilltrain.model import BiEncoder
    from skilltrain.scoring import ScoringConfig

    out = tmp_path_factory.mktemp("token") / "model"
    BiEncoder.from_pretrained(tiny_encoder_dir, scoring=ScoringConfig("token_attention", attention_temperature=TEMPERATURE)).save(out)
    return out


@pytest.mark.slow
def test_token_attention_model_on_s3_answers_like_the_extractor(token_model_dir: Path, s3_server, tmp_path: Path):
    from conftest import synthetic_skill_rows, write_esco_csv
    from skillgen.common import resolve
    from skilltrain import SkillExtractor
    from skilltrain.serve.config import AppConfig

    env = {**s3_server.env(), "SKILLGEN_CACHE_DIR": str(tmp_path / "cache")}
    uri = f"s3://{s3_server.make_bucket()}/models/token"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        resolve(uri).upload_dir(token_model_dir)
    esco = write_esco_csv(tmp_path / "skills_en.csv", synthetic_skill_rows(60))
    extractor = SkillExtractor.from_pretrained(token_model_dir, esco, device="cpu", cache_dir=tmp_path / "local-index")
    assert extractor.encoder.scoring.token_level

    with serving(AppConfig(model=uri, esco=str(esco)), env=env) as url, client() as http:
        requests = ({"texts": ADS, "top_k": 4}, {"texts": ADS[:3], "split": False, "min_score": 0.1},
                    {"texts": ADS[:2], "exhaustive": True}, {"texts": ADS[:2], "diverse": True, "top_k": 3},
                    {"texts": ADS[:2], "diversity": 0.3, "top_k": 3})
        for body in requests:
            answer = http.post(f"{url}/v1/extract", json=body)
            assert answer.status_code == 200, answer.text
            assert all(skill["evidence"] for text in answer.json()["results"] for sentence in text["sentences"]
                       for skill in sentence["skills"])  # a token-attention model shows its words
            options = {("diverse" if k == "diversity" else k): v for k, v in body.items() if k != "texts"}  # extract(diverse=0.3)
            assert_same_results(answer.json()["results"], expected_results(extractor, body["texts"], **options))
        info = http.get(f"{url}/v1/model").json()
    assert info["model"] == uri and info["backend"] == extractor.backend
    assert info["scoring"] == json.loads((token_model_dir / "skilltrain_scoring.json").read_text())
    assert info["scoring"]["scoring"] == "token_attention" and info["scoring"]["attention_temperature"] == TEMPERATURE
    assert info["trained"] is False and info["test"] is None and info["taxonomy"]["skills"] == 60
    assert len(list((tmp_path / "cache" / "serve-models").iterdir())) == 1  # fetched once into the node's cache
