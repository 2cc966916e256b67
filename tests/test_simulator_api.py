"""The simulator through the real ``openai`` client over loopback HTTP: schema, usage, auth, headers, stats.

The server runs in a background thread of this process (``run_in_thread``),
which is real HTTP on 127.0.0.1 and starts in milliseconds.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import urllib.error
import urllib.request
import uuid
from typing import Any, Iterator

import openai
import pytest

from skillgen.llm.prompts import build_messages, response_format
from skillgen.simulator import SimulatorConfig, run_in_thread
from skillgen.simulator.embedded import SimulatorThread
from skillgen.common.taxonomy import Skill
from skillgen.llm.tokens import count_text_tokens, count_tokens, encoding_for

MODEL = "gpt-4o-mini"
SKILL = Skill("s1", "manage musical staff", ("manage staff of music", "direct musical staff"),
              "Assign and manage staff tasks in areas such as scoring, arranging, copying music and vocal coaching.")
OTHER = Skill("s2", "labour legislation", ("employment law",),
              "Legislation, on a national or international level, that governs labour conditions.")
DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with run_in_thread(SimulatorConfig(rpm=600, tpm=200_000, context_window=4000, seed=1)) as server:
        yield server


def client_for(sim: SimulatorThread, api_key: str | None = None, **kwargs: Any) -> openai.OpenAI:
    """A fresh API key per test gives every test its own, full rate-limit buckets."""
    return openai.OpenAI(base_url=sim.base_url, api_key=api_key or f"sk-test-{uuid.uuid4().hex}", max_retries=0,
                         timeout=kwargs.pop("timeout", 10.0), **kwargs)


def test_models_lists_the_configured_models(sim: SimulatorThread) -> None:
    ids = [m.id for m in client_for(sim).models.list()]
    assert ids == list(SimulatorConfig().models)


def test_json_schema_round_trip_with_usage_counted_by_tiktoken(sim: SimulatorThread) -> None:
    messages = build_messages(SKILL, 6)
    completion = client_for(sim).chat.completions.create(
        model=MODEL, messages=messages, response_format=response_format(json_schema=True), max_tokens=800)
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL and len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant" and choice.index == 0
    sentences = json.loads(choice.message.content or "")["sentences"]
    assert len(sentences) == 6 and all(isinstance(s, str) and s for s in sentences)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == count_tokens(MODEL, messages)
    assert usage.completion_tokens == count_text_tokens(MODEL, choice.message.content or "")
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_clients_own_json_schema_is_honoured(sim: SimulatorThread) -> None:
    schema = {"type": "object", "additionalProperties": False, "required": ["lines", "skill", "confidence"],
              "properties": {"lines": {"type": "array", "items": {"type": "string"}},
                             "skill": {"type": "string"}, "confidence": {"type": "number"}}}
    completion = client_for(sim).chat.completions.create(
        model=MODEL, messages=build_messages(SKILL, 4),
        response_format={"type": "json_schema", "json_schema": {"name": "custom", "strict": True, "schema": schema}})
    value = json.loads(completion.choices[0].message.content or "")
    assert set(value) == {"lines", "skill", "confidence"}
    assert len(value["lines"]) == 4 and isinstance(value["skill"], str) and isinstance(value["confidence"], (int, float))


def test_json_object_mode_and_plain_text_for_other_prompts(sim: SimulatorThread) -> None:
    client = client_for(sim)
    obj = client.chat.completions.create(model=MODEL, messages=build_messages(SKILL, 3), response_format={"type": "json_object"})
    assert len(json.loads(obj.choices[0].message.content or "")["sentences"]) == 3
    plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What time is it?"}])
    text = plain.choices[0].message.content or ""
    assert text and not text.startswith("{") and len(text.split()) < 30
    generic_json = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                  response_format={"type": "json_object"})
    assert isinstance(json.loads(generic_json.choices[0].message.content or ""), dict)


def test_n_choices_are_billed_together(sim: SimulatorThread) -> None:
    completion = client_for(sim).chat.completions.create(
        model=MODEL, messages=build_messages(SKILL, 5), response_format=response_format(), n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    contents = [c.message.content or "" for c in completion.choices]
    assert all(len(json.loads(c)["sentences"]) == 5 for c in contents)
    assert len(set(contents)) == 3  # sampled independently
    assert completion.usage is not None
    assert completion.usage.completion_tokens == sum(count_text_tokens(MODEL, c) for c in contents)


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_length_truncation_cuts_the_same_completion_at_max_tokens(sim: SimulatorThread, param: str) -> None:
    client = client_for(sim)
    kwargs: dict[str, Any] = dict(model=MODEL, messages=build_messages(SKILL, 8), response_format=response_format(), seed=42)
    full = client.chat.completions.create(**kwargs)
    cut = client.chat.completions.create(**kwargs, **{param: 12})
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 12
    encoding = encoding_for(MODEL)
    expected = encoding.decode(encoding.encode(full.choices[0].message.content or "")[:12])
    assert cut.choices[0].message.content == expected
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.choices[0].message.content or "")


def test_seed_and_temperature_zero_are_reproducible_and_otherwise_output_varies(sim: SimulatorThread) -> None:
    client = client_for(sim)
    messages = build_messages(SKILL, 6)

    def content(**kwargs: Any) -> str:
        return client.chat.completions.create(model=MODEL, messages=messages, **kwargs).choices[0].message.content or ""

    assert content(seed=7) == content(seed=7)
    assert content(seed=7) != content(seed=8)
    assert content(temperature=0) == content(temperature=0)
    assert len({content(temperature=1.0) for _ in range(4)}) == 4


def test_completion_lengths_follow_a_distribution(sim: SimulatorThread) -> None:
    client = client_for(sim)
    lengths = []
    for skill in (SKILL, OTHER):
        for _ in range(10):
            usage = client.chat.completions.create(model=MODEL, messages=build_messages(skill, 10)).usage
            assert usage is not None
            lengths.append(usage.completion_tokens)
    assert statistics.pstdev(lengths) > 4 and len(set(lengths)) >= 8


def test_prompt_plus_max_tokens_beyond_the_context_window_is_a_400(sim: SimulatorThread) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client_for(sim).chat.completions.create(model=MODEL, messages=build_messages(SKILL, 3), max_tokens=5000)
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    assert sim.stats()["failed"].get("context_length_exceeded", 0) >= 1


@pytest.mark.parametrize(
    "body",
    [{"model": MODEL, "messages": []}, {"messages": [{"role": "user", "content": "x"}]},
     {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 0},
     {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}},
     {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True}],
)
def test_invalid_requests_are_400s(sim: SimulatorThread, body: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError):
        client_for(sim).post("/chat/completions", body=body, cast_to=dict)


def _raw_post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_any_non_empty_key_is_accepted_but_a_missing_key_is_a_401(sim: SimulatorThread) -> None:
    status, body = _raw_post(sim.base_url + "/chat/completions", {})
    assert status == 401 and body["error"]["type"] == "invalid_request_error"
    status, _ = _raw_post(sim.base_url + "/chat/completions", {"Authorization": "Bearer "})
    assert status == 401
    status, _ = _raw_post(sim.base_url + "/chat/completions", {"Authorization": "Bearer anything-goes"})
    assert status == 200


def test_require_key_rejects_other_keys_and_the_key_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-very-secret-" + uuid.uuid4().hex
    wrong = "sk-wrong-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG, logger="skillgen.simulator")
    with run_in_thread(require_key=secret) as locked:
        with pytest.raises(openai.AuthenticationError) as info:
            client_for(locked, api_key=wrong).chat.completions.create(model=MODEL, messages=build_messages(SKILL, 2))
        assert info.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            client_for(locked, api_key=wrong).models.list()
        ok = client_for(locked, api_key=secret).chat.completions.create(model=MODEL, messages=build_messages(SKILL, 2))
        assert ok.choices[0].message.content
        stats_text = json.dumps(locked.stats())
    assert "key=" in caplog.text  # requests were logged (with a fingerprint) ...
    for key in (secret, wrong):
        assert key not in caplog.text and key not in stats_text  # ... but never a key
        assert key not in str(info.value)


def test_rate_limit_headers_are_on_every_response_and_decrease(sim: SimulatorThread) -> None:
    client = client_for(sim)
    messages = build_messages(SKILL, 3)
    seen = []
    for _ in range(5):
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, max_tokens=200)
        seen.append(raw.headers)
    assert all(h["x-ratelimit-limit-requests"] == "600" and h["x-ratelimit-limit-tokens"] == "200000" for h in seen)
    requests_left = [int(h["x-ratelimit-remaining-requests"]) for h in seen]
    tokens_left = [int(h["x-ratelimit-remaining-tokens"]) for h in seen]
    assert requests_left == sorted(requests_left, reverse=True) and len(set(requests_left)) == 5
    assert requests_left[0] == 599
    cost = count_tokens(MODEL, messages) + 200
    assert tokens_left[0] == 200_000 - cost
    assert all(a > b for a, b in zip(tokens_left, tokens_left[1:]))
    for h in seen:
        assert DURATION.match(h["x-ratelimit-reset-requests"]) and DURATION.match(h["x-ratelimit-reset-tokens"])
    # Error responses carry them too.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5000)
    assert "x-ratelimit-remaining-requests" in info.value.response.headers


def test_over_the_token_limit_is_a_429_with_retry_after(sim: SimulatorThread) -> None:
    client = client_for(sim)
    messages = [{"role": "user", "content": "hi"}]
    prompt = count_tokens(MODEL, messages)
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3900 - prompt)  # drains 3900 of 200000
    with pytest.raises(openai.RateLimitError) as too_large:
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3999 - prompt, n=60)
    err = too_large.value
    assert err.code == "rate_limit_exceeded" and err.type == "tokens"
    assert "Request too large" in err.message
    retry_after = int(err.response.headers["retry-after"])
    retry_ms = int(err.response.headers["retry-after-ms"])
    assert retry_after >= 1 and retry_ms >= 1
    assert "x-ratelimit-remaining-tokens" in err.response.headers


def test_over_the_request_limit_is_a_429_of_type_requests() -> None:
    with run_in_thread(rpm=5) as small:
        client = client_for(small, api_key="sk-rpm-test")
        for _ in range(5):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        err = info.value
        assert err.code == "rate_limit_exceeded" and err.type == "requests"
        assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert int(err.response.headers["retry-after"]) == 12  # 5 rpm: one request every 12 s
        assert 11_000 < int(err.response.headers["retry-after-ms"]) <= 12_000
        # Another key has its own buckets.
        client_for(small, api_key="sk-other").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        stats = small.stats()
    assert stats["failed"] == {"rate_limited": 1} and stats["rate_limited_by_type"] == {"requests": 1}
    assert stats["served"] == 6


def test_stats_count_request_keys_billing_and_reset() -> None:
    with run_in_thread() as fresh:
        client = client_for(fresh)
        usages = []
        for key in ("k-a", "k-b", "k-a"):
            completion = client.chat.completions.create(model=MODEL, messages=build_messages(SKILL, 3),
                                                        extra_headers={"X-Request-Key": key})
            assert completion.usage is not None
            usages.append(completion.usage)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=MODEL, messages=[], extra_headers={"X-Request-Key": "k-c"})
        client.chat.completions.create(model=MODEL, messages=build_messages(SKILL, 3))  # no key header
        stats = fresh.stats()
        assert stats["received"] == 5 and stats["served"] == 4 and stats["failed"] == {"bad_request": 1}
        assert stats["served_by_key"] == {"k-a": 2, "k-b": 1}
        assert stats["received_by_key"] == {"k-a": 2, "k-b": 1, "k-c": 1}
        assert stats["prompt_tokens_billed"] == sum(u.prompt_tokens for u in usages) + count_tokens(MODEL, build_messages(SKILL, 3))
        assert stats["completion_tokens_billed"] > sum(u.completion_tokens for u in usages)
        assert stats["received"] == stats["served"] + stats["failed_total"] + stats["client_disconnected"] + stats["in_flight"]
        fresh.reset_stats()
        after = fresh.stats()
        assert after["received"] == 0 and after["served_by_key"] == {} and after["prompt_tokens_billed"] == 0
        http_stats = json.loads(urllib.request.build_opener(urllib.request.ProxyHandler({}))
                                .open(fresh.base_url + "/stats", timeout=5).read())
        assert http_stats["received"] == 0 and http_stats["config"]["rpm"] == 0


def test_a_client_that_times_out_is_not_billed() -> None:
    with run_in_thread(latency="fixed:1.0") as slow:
        client = client_for(slow, timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model=MODEL, messages=build_messages(SKILL, 2),
                                           extra_headers={"X-Request-Key": "slow-1"})
        deadline_stats = _wait_for(slow, lambda s: s["in_flight"] == 0)
    assert deadline_stats["served"] == 0 and deadline_stats["client_disconnected"] == 1
    assert deadline_stats["served_by_key"] == {} and deadline_stats["prompt_tokens_billed"] == 0


def _wait_for(sim: SimulatorThread, condition: Any, timeout: float = 5.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        stats = sim.stats()
        if condition(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)
