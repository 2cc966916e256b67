"""Every injected fault, as the real ``openai`` client sees it, against the simulator in a subprocess."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, Iterator

import openai
import pytest

from skillgen.llm.prompts import build_messages, response_format
from skillgen.simulator import FaultKind, SimulatorProcess, run_in_thread
from skillgen.simulator.process import SimulatorProcess as ProcessClass
from skillgen.common.taxonomy import Skill

MODEL = "gpt-4o-mini"
SKILL = Skill("s1", "operate forklift", ("drive forklift",), "Operate a forklift to lift, move and stack goods safely.")
MESSAGES = build_messages(SKILL, 5)
CLIENT_TIMEOUT = 10.0  # generous: a busy machine must not turn a fault into a timeout
HANG_CLIENT_TIMEOUT = 0.75


@pytest.fixture(scope="module")
def sim() -> Iterator[ProcessClass]:
    with SimulatorProcess(hang_seconds=30, rpm=10_000, tpm=10_000_000) as server:
        create(server)  # the first completion waits for the tokenizer to load
        yield server


def create(sim: ProcessClass, fault: str | None = None, key: str | None = None, timeout: float = CLIENT_TIMEOUT,
           **kwargs: Any) -> Any:
    client = openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0, timeout=timeout)
    headers = {}
    if fault:
        headers["X-Sim-Fault"] = fault
    if key:
        headers["X-Request-Key"] = key
    return client.chat.completions.create(model=MODEL, messages=MESSAGES, response_format=response_format(),
                                          extra_headers=headers, **kwargs)


ERRORS = {
    FaultKind.RATE_LIMIT: (openai.RateLimitError, "rate_limit_exceeded"),
    FaultKind.SERVER_ERROR: (openai.InternalServerError, None),
    FaultKind.BAD_GATEWAY: (openai.InternalServerError, None),
    FaultKind.UNAVAILABLE: (openai.InternalServerError, None),
    FaultKind.CONTEXT_LENGTH: (openai.BadRequestError, "context_length_exceeded"),
    FaultKind.INVALID_KEY: (openai.AuthenticationError, "invalid_api_key"),
    FaultKind.INSUFFICIENT_QUOTA: (openai.RateLimitError, "insufficient_quota"),
}


@pytest.mark.parametrize("kind", list(ERRORS), ids=str)
def test_error_faults_raise_the_matching_openai_exception(sim: ProcessClass, kind: FaultKind) -> None:
    exc_type, code = ERRORS[kind]
    before = sim.stats()["failed"].get(kind.value, 0)
    with pytest.raises(exc_type) as info:
        create(sim, kind.value)
    assert info.value.code == code
    if kind in (FaultKind.SERVER_ERROR, FaultKind.BAD_GATEWAY, FaultKind.UNAVAILABLE):
        assert info.value.status_code == int(kind.value)
    if kind is FaultKind.RATE_LIMIT:
        assert info.value.response.headers["retry-after"] == "1"
    assert sim.stats()["failed"][kind.value] == before + 1


def test_hang_is_a_client_timeout_and_is_not_billed(sim: ProcessClass) -> None:
    sim.reset_stats()
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        create(sim, "hang", key="hang-1", timeout=HANG_CLIENT_TIMEOUT)
    assert time.monotonic() - started < HANG_CLIENT_TIMEOUT + 2.0
    stats = _settled(sim)
    assert stats["failed"] == {"hang": 1} and stats["served"] == 0 and stats["client_disconnected"] == 0


def test_drop_is_a_connection_error_not_a_timeout(sim: ProcessClass) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIConnectionError) as info:
        create(sim, "drop")
    assert not isinstance(info.value, openai.APITimeoutError)
    assert time.monotonic() - started < 5.0
    assert sim.stats()["failed"]["drop"] >= 1


def test_degraded_content_arrives_as_billed_200s(sim: ProcessClass) -> None:
    sim.reset_stats()
    malformed = create(sim, "malformed", key="m")
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.choices[0].message.content or "")
    wrong = create(sim, "wrong_count", key="w")
    assert len(json.loads(wrong.choices[0].message.content or "")["sentences"]) != 5
    empty = create(sim, "empty", key="e")
    assert empty.choices[0].message.content == "" and empty.usage.completion_tokens == 0
    assert empty.choices[0].finish_reason == "stop"
    stats = sim.stats()
    assert stats["degraded"] == {"malformed": 1, "wrong_count": 1, "empty": 1}
    assert stats["served"] == 3 and stats["served_by_key"] == {"m": 1, "w": 1, "e": 1}
    billed = sum(r.usage.completion_tokens for r in (malformed, wrong, empty))
    assert stats["completion_tokens_billed"] == billed


def test_an_unknown_forced_fault_is_a_400(sim: ProcessClass) -> None:
    with pytest.raises(openai.BadRequestError):
        create(sim, "meteor")


def _settled(sim: ProcessClass, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = sim.stats()
        if stats["in_flight"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


RATES = {"500": 0.15, "503": 0.05, "drop": 0.1, "malformed": 0.1, "empty": 0.05, "insufficient_quota": 0.05}


def _observe(base_url: str, n: int) -> list[str]:
    """What a client sees for ``n`` sequential requests, as one label per request."""
    client = openai.OpenAI(base_url=base_url, api_key="sk-rates", max_retries=0, timeout=5)
    seen = []
    for i in range(n):
        try:
            reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, response_format=response_format(),
                                                   extra_headers={"X-Request-Key": f"r{i}"})
        except openai.APIConnectionError:
            seen.append("drop")
        except openai.RateLimitError as exc:
            seen.append(str(exc.code))
        except openai.InternalServerError as exc:
            seen.append(str(exc.status_code))
        else:
            content = reply.choices[0].message.content or ""
            if not content:
                seen.append("empty")
            else:
                try:
                    json.loads(content)
                    seen.append("ok")
                except json.JSONDecodeError:
                    seen.append("malformed")
    return seen


def test_configured_fault_rates_are_observed_reproducibly_and_match_the_stats() -> None:
    n = 300
    with run_in_thread(fault_rates=RATES, seed=11) as first:
        seen = _observe(first.base_url, n)
        stats = first.stats()
    counts = Counter(seen)
    for kind, rate in RATES.items():
        assert abs(counts[kind] / n - rate) < 4 * (rate * (1 - rate) / n) ** 0.5 + 0.01, (kind, counts)
    assert counts["ok"] / n == pytest.approx(1 - sum(RATES.values()), abs=0.08)
    # The client's view and the server's accounting agree, kind by kind.
    assert stats["failed"] == {k: counts[k] for k in ("500", "503", "drop", "insufficient_quota") if counts[k]}
    assert stats["degraded"] == {k: counts[k] for k in ("malformed", "empty") if counts[k]}
    assert stats["served"] == counts["ok"] + counts["malformed"] + counts["empty"]
    assert max(stats["served_by_key"].values()) == 1
    # Same seed, same sequence; another seed, another one.
    with run_in_thread(fault_rates=RATES, seed=11) as again:
        assert _observe(again.base_url, 60) == seen[:60]
    with run_in_thread(fault_rates=RATES, seed=12) as other:
        assert _observe(other.base_url, 60) != seen[:60]


def test_latency_is_drawn_from_the_configured_distribution() -> None:
    with run_in_thread(latency="uniform:0.05,0.2") as slow:
        client = openai.OpenAI(base_url=slow.base_url, api_key="sk-lat", max_retries=0, timeout=5)
        client.models.list()  # connect first, so handshakes do not count
        elapsed = []
        for _ in range(8):
            started = time.monotonic()
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
            elapsed.append(time.monotonic() - started)
    assert min(elapsed) >= 0.05 and max(elapsed) < 2.0  # generous upper bound: the machine may be busy
    assert max(elapsed) - min(elapsed) > 0.03  # not a constant
