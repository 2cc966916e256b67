"""``skilltrain serve`` on real Ray Serve (a private local Ray), asked over loopback with a real HTTP client.

One application for the module (Serve's start-up costs seconds): the tiny pooled encoder behind a
bearer token and small limits. The default suite runs one test against it (answers equal
``SkillExtractor.extract``, batched across concurrent requests; auth; a limit); the rest is slow.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.serve import ADS, TEST_KEY, TEST_KEY_ENV, assert_same_results, auth, client, expected_results, ray_logs_dir, serving

MAX_TEXTS, MAX_CHARS, MAX_TOP_K = 8, 400, 20
TRAINING = {"model": "minilm", "scoring": "pooled", "run_name": "tiny-test"}
EVAL = {"best_step": 7, "validation": {"val_rp5": 12.5},
        "test": {"tech": {"n": 3, "RP@5": 33.3, "MRR": 0.25}, "house": {"n": 3, "RP@5": 11.1, "MRR": 0.1}}}


@pytest.fixture(scope="module")
def model_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder saved the way ``skilltrain fit`` saves a model: with its training config and scores."""
    from skilltrain.model import BiEncoder

    out = tmp_path_factory.mktemp("served") / "model"
    BiEncoder.from_pretrained(tiny_encoder_dir).save(out, training_config=TRAINING, eval_results=EVAL)
    return out


@pytest.fixture(scope="module")
def esco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import synthetic_skill_rows, write_esco_csv

    return write_esco_csv(tmp_path_factory.mktemp("esco") / "skills_en.csv", synthetic_skill_rows(40))


@pytest.fixture(scope="module")
def extractor(model_dir: Path, esco: Path):
    from skilltrain import SkillExtractor

    return SkillExtractor.from_pretrained(model_dir, esco, backend="torch-fp32", device="cpu")


@pytest.fixture(scope="module")
def service(model_dir: Path, esco: Path):
    from skilltrain.serve.config import AppConfig

    app = AppConfig(model=str(model_dir), esco=str(esco), backend="torch-fp32", max_texts=MAX_TEXTS, max_chars=MAX_CHARS,
                    max_top_k=MAX_TOP_K, api_key_env=TEST_KEY_ENV, batch_wait_ms=20, max_batch_size=16)
    with serving(app, env={TEST_KEY_ENV: TEST_KEY}) as url:
        yield url


REQUESTS = [
    {"texts": ADS},
    {"texts": ADS[:3], "top_k": 3, "min_score": 0.0},
    {"texts": ADS[1:], "top_k": 7, "split": False},
    {"texts": [ADS[0]] * 5, "top_k": 1},
]


def test_answers_equal_the_extractor_across_concurrent_requests_behind_auth_and_limits(service: str, extractor):
    with client() as http, ThreadPoolExecutor(len(REQUESTS)) as pool:
        answers = list(pool.map(lambda body: http.post(f"{service}/v1/extract", json=body, headers=auth()), REQUESTS))
        for body, answer in zip(REQUESTS, answers):
            assert answer.status_code == 200, answer.text
            options = {k: v for k, v in body.items() if k != "texts"}
            assert_same_results(answer.json()["results"], expected_results(extractor, body["texts"], **options))
            assert {"ingress", "queue", "model"} <= {part.split(";")[0] for part in answer.headers["server-timing"].split(", ")}

        refused = http.post(f"{service}/v1/extract", json=REQUESTS[0], headers=auth("wrong-key"))
        assert refused.status_code == 401 and refused.json() == {"detail": refused.json()["detail"]}
        assert "authorization" in refused.json()["detail"] and refused.headers["www-authenticate"] == "Bearer"
        too_many = http.post(f"{service}/v1/extract", json={"texts": ["a"] * (MAX_TEXTS + 1)}, headers=auth())
        assert too_many.status_code == 413
        assert too_many.json()["detail"] == f"texts: {MAX_TEXTS + 1} texts, over the limit of {MAX_TEXTS} (--max-texts)"


BAD_INPUTS = [
    # (body as bytes or JSON, status, the one line)
    (b"{not json", 400, "body: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    (b"", 400, "body: not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    ([1, 2], 422, "body: Input should be a valid dictionary or instance of ExtractRequest"),
    ({}, 422, "texts: Field required"),
    ({"texts": "one ad"}, 422, "texts: Input should be a valid list"),
    ({"texts": ["ok", 7]}, 422, "texts[1]: Input should be a valid string"),
    ({"texts": ["ok"], "top_k": "5"}, 422, "top_k: Input should be a valid integer"),
    ({"texts": ["ok"], "split": "yes"}, 422, "split: Input should be a valid boolean"),
    ({"texts": ["ok"], "topk": 5}, 422, "topk: Extra inputs are not permitted"),
    ({"texts": ["ok"] * (MAX_TEXTS + 1)}, 413, f"texts: {MAX_TEXTS + 1} texts, over the limit of {MAX_TEXTS} (--max-texts)"),
    ({"texts": ["ok", "x" * (MAX_CHARS + 1)]}, 413, f"texts[1]: {MAX_CHARS + 1} characters, over the limit of {MAX_CHARS} (--max-chars)"),
    ({"texts": ["ok"], "top_k": 0}, 422, f"top_k: 0 is out of range, must be 1..{MAX_TOP_K} (--max-top-k)"),
    ({"texts": ["ok"], "top_k": MAX_TOP_K + 1}, 422, f"top_k: {MAX_TOP_K + 1} is out of range, must be 1..{MAX_TOP_K} (--max-top-k)"),
    (b'{"texts": ["ok"], "min_score": NaN}', 422, "min_score: must be a finite number (got nan)"),
    ({"texts": ["ok"], "diverse": True}, 422, "diverse: needs a token-attention model (this one scores pooled)"),
    ({"texts": ["ok"], "diversity": 0}, 422, "diverse: needs a token-attention model (this one scores pooled)"),
    ({"texts": ["ok"], "diversity": -0.5}, 422, "diversity: Input should be greater than or equal to 0"),
    ({"texts": ["ok"], "diversity": 0.3, "diverse": False}, 422, "diversity: asks for the coverage-aware top-k, which diverse: false turns off"),
    ({"texts": ["ok"], "exhaustive": "yes"}, 422, "exhaustive: Input should be a valid boolean"),
]


@pytest.mark.slow
def test_every_bad_input_gets_its_status_and_one_line(service: str):
    with client() as http:
        for body, status, line in BAD_INPUTS:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            answer = http.post(f"{service}/v1/extract", content=content, headers={**auth(), "Content-Type": "application/json"})
            assert (answer.status_code, answer.json()) == (status, {"detail": line}), body
        huge = http.post(f"{service}/v1/extract", content=b"x" * (MAX_TEXTS * (12 * MAX_CHARS + 8) + 4097), headers=auth())
        assert huge.status_code == 413 and huge.json()["detail"].startswith("body: ")
        assert http.get(f"{service}/v1/extract", headers=auth()).status_code == 405


@pytest.mark.slow
def test_every_route_needs_the_bearer_token(service: str):
    with client() as http:
        for method, path in (("GET", "/healthz"), ("GET", "/v1/model"), ("GET", "/openapi.json"), ("POST", "/v1/extract")):
            for headers in ({}, auth("nope"), {"Authorization": TEST_KEY}, {"Authorization": f"Basic {TEST_KEY}"}):
                answer = http.request(method, f"{service}{path}", json={"texts": ["x"]}, headers=headers)
                assert answer.status_code == 401, (path, headers)
            assert http.request(method, f"{service}{path}", json={"texts": ["x"]}, headers=auth()).status_code == 200


@pytest.mark.slow
def test_model_route_reports_the_model_directory(service: str, model_dir: Path, esco: Path):
    from skillgen.common import file_sha256

    with client() as http:
        info = http.get(f"{service}/v1/model", headers=auth()).json()
    assert info["model"] == str(model_dir) and info["trained"] is True and info["base_encoder"] == "minilm"
    assert info["scoring"] == json.loads((model_dir / "skilltrain_scoring.json").read_text())
    assert info["scoring"]["scoring"] == "pooled"
    assert info["test"] == EVAL["test"] and info["validation"] == EVAL["validation"] and info["best_step"] == 7
    assert info["taxonomy"] == {"file": "skills_en.csv", "sha256": file_sha256(esco), "skills": 40, "esco_version": None}
    assert info["backend"] == "torch-fp32" and info["device"] == "cpu" and info["max_seq_length"] == 64
    assert info["version"]


@pytest.mark.slow
def test_openapi_schema_describes_the_routes_and_the_limits(service: str):
    with client() as http:
        spec = http.get(f"{service}/openapi.json", headers=auth()).json()
    assert set(spec["paths"]) == {"/v1/extract", "/v1/model", "/healthz"}
    body = spec["paths"]["/v1/extract"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["texts"]["maxItems"] == MAX_TEXTS and body["properties"]["texts"]["items"]["maxLength"] == MAX_CHARS
    assert body["properties"]["top_k"]["maximum"] == MAX_TOP_K and body["required"] == ["texts"]
    responses = spec["paths"]["/v1/extract"]["post"]["responses"]
    assert {"200", "400", "401", "413", "422", "503"} <= set(responses)
    assert "ExtractResponse" in spec["components"]["schemas"] and "SkillResult" in spec["components"]["schemas"]


@pytest.mark.slow
def test_the_key_is_in_no_log_and_counters_reach_prometheus(service: str):
    import time

    from helpers.promscrape import exported, metrics_url, scrape

    with client() as http:
        for _ in range(3):
            assert http.post(f"{service}/v1/extract", json={"texts": ADS[:2]}, headers=auth()).status_code == 200
        assert http.post(f"{service}/v1/extract", json={"texts": ["x"]}, headers=auth(TEST_KEY + "x")).status_code == 401
    deadline, samples = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        samples = scrape(metrics_url(), (exported("skilltrain_serve_"),))
        totals = {s.name: s.value for s in samples if s.name.endswith(("_total", "_count"))}
        if totals.get(exported("skilltrain_serve_texts_total"), 0) >= 6:
            break
        time.sleep(1)
    # 3 requests of ADS[:2] (4 + 2 sentences); the module's other tests may have sent more before this one
    assert totals[exported("skilltrain_serve_texts_total")] >= 6 and totals[exported("skilltrain_serve_sentences_total")] >= 18
    assert 1 <= totals[exported("skilltrain_serve_batches_total")] == totals[exported("skilltrain_serve_batch_size_count")]
    logs = [p for p in ray_logs_dir().rglob("*") if p.is_file()]
    assert len(logs) > 5 and any("SkillAPI" in p.name for p in logs)  # the walk found the replicas' logs
    assert [p.name for p in logs if TEST_KEY.encode() in p.read_bytes()] == []


def test_a_strength_is_its_own_option_so_requests_that_differ_in_it_never_share_a_model_call():
    from skilltrain.serve.messages import ExtractOptions

    on, strength_one = ExtractOptions(diverse=True), ExtractOptions(diversity=1.0)
    off, strength_zero = ExtractOptions(diverse=False), ExtractOptions(diversity=0.0)
    assert on != strength_one and off != strength_zero  # True == 1.0 and False == 0.0 would merge them as one number
    assert len({on, strength_one, off, strength_zero}) == 4
    assert strength_zero.extract_kwargs()["diverse"] == 0.0 and "diversity" not in strength_zero.extract_kwargs()
    assert on.extract_kwargs()["diverse"] is True
