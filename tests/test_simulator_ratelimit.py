"""Rate limits enforced as advertised, measured by a real client over a time window.

Method (the same for the fast and the 60 s variants): drain the key's bucket,
then offer requests at twice the limit's rate for the window and count what
is admitted. A continuously refilling bucket must admit exactly the refill,
limit x window / 60, give or take the one request (or one request's tokens)
that straddles each end of the window; we require 2%. The window is timed
with the limiter's clock (``x-sim-limiter-time``, when the server judged
each request) rather than the client's send times, which drift by tens of
milliseconds when the machine is busy. The server runs in a subprocess so
that its CPU does not compete with the client's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Iterator

import aiohttp
import openai
import pytest

from skillgen.simulator import SimulatorProcess
from skillgen.simulator.process import SimulatorProcess as ProcessClass
from skillgen.simulator.ratelimit import CLOCK_HEADER
from skillgen.tokens import count_tokens

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hi."}]
PROMPT_TOKENS = count_tokens(MODEL, MESSAGES)
TOLERANCE = 0.02


@dataclass
class Drain:
    admitted: int  # a fresh key's burst: its full bucket plus the refill while draining
    seconds: float  # limiter time from the first to the last drain request
    empty_at: float  # limiter time of the final refusal


@dataclass
class Window:
    admitted: int
    rejected: int
    seconds: float  # limiter time from the drained bucket to the last request judged
    drain: Drain


def _judged_at(headers: Any) -> float:
    return float(headers[CLOCK_HEADER])


async def _send(client: openai.AsyncOpenAI, max_tokens: int) -> tuple[bool, float]:
    """One request through the real SDK: (admitted?, when the limiter judged it)."""
    try:
        raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=max_tokens)
        raw.parse()
        return True, _judged_at(raw.headers)
    except openai.RateLimitError as exc:
        assert exc.code == "rate_limit_exceeded"
        return False, _judged_at(exc.response.headers)


async def _post(session: aiohttp.ClientSession, base_url: str, api_key: str, max_tokens: int) -> tuple[bool, float]:
    """A bare request: the drain and burst phases only need "admitted or not", and aiohttp is cheap."""
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": max_tokens}
    async with session.post(f"{base_url}/chat/completions", json=body,
                            headers={"Authorization": f"Bearer {api_key}"}) as resp:
        await resp.read()
        assert resp.status in (200, 429), resp.status
        return resp.status == 200, _judged_at(resp.headers)


async def _drain(base_url: str, api_key: str, max_tokens: int, concurrency: int) -> Drain:
    """Spend the bucket until a request is refused with nothing else in flight."""
    refused = asyncio.Event()
    results: list[tuple[bool, float]] = []
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while not refused.is_set():
                results.append(await _post(session, base_url, api_key, max_tokens))
                if not results[-1][0]:
                    refused.set()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        while results[-1][0] or len(results) < 2:  # stragglers may have been admitted by refill: refuse one alone
            results.append(await _post(session, base_url, api_key, max_tokens))
    times = [t for _, t in results]
    return Drain(sum(ok for ok, _ in results), max(times) - min(times), results[-1][1])


async def _offer(client: openai.AsyncOpenAI, max_tokens: int, rate: float, seconds: float, drain: Drain) -> Window:
    """Requests evenly spaced at ``rate`` per second for ``seconds``, counted from when the bucket was empty."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[tuple[bool, float]]] = []
    i = 0
    while start + i / rate - start <= seconds:
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        tasks.append(asyncio.create_task(_send(client, max_tokens)))
        i += 1
    results = await asyncio.gather(*tasks)
    admitted = sum(ok for ok, _ in results)
    return Window(admitted, len(results) - admitted, max(t for _, t in results) - drain.empty_at, drain)


def measure(base_url: str, api_key: str, max_tokens: int, per_second: float, seconds: float,
            drain_max_tokens: int | None = None) -> Window:
    async def run() -> Window:
        client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
        async with client:
            drain = await _drain(base_url, api_key, drain_max_tokens or max_tokens,
                                 concurrency=1 if drain_max_tokens else 32)
            return await _offer(client, max_tokens, 2 * per_second, seconds, drain)

    return asyncio.run(run())


def check_requests_limit(sim: ProcessClass, rpm: int, seconds: float) -> None:
    window = measure(sim.base_url or "", "sk-rpm", max_tokens=5, per_second=rpm / 60, seconds=seconds)
    expected = rpm / 60 * window.seconds
    assert window.rejected > 0.3 * window.admitted  # the offer really was above the limit
    assert abs(window.admitted - expected) <= TOLERANCE * expected, (window, expected)
    # The fresh key first burst its whole bucket (one minute's allowance), plus what refilled meanwhile.
    burst_max = rpm + rpm / 60 * window.drain.seconds + 1
    assert rpm <= window.drain.admitted <= burst_max, (window.drain, burst_max)


def check_tokens_limit(sim: ProcessClass, tpm: int, seconds: float, max_tokens: int) -> None:
    cost = PROMPT_TOKENS + max_tokens
    # One request that costs the whole (full) bucket drains it exactly.
    window = measure(sim.base_url or "", "sk-tpm", max_tokens=max_tokens, per_second=tpm / 60 / cost,
                     seconds=seconds, drain_max_tokens=tpm - PROMPT_TOKENS)
    expected = tpm / 60 * window.seconds
    admitted_tokens = window.admitted * cost
    assert window.rejected > 0.3 * window.admitted
    assert abs(admitted_tokens - expected) <= TOLERANCE * expected, (window, admitted_tokens, expected)


@pytest.fixture(scope="module")
def rpm_server() -> Iterator[ProcessClass]:
    with SimulatorProcess(rpm=600) as sim:
        yield sim


@pytest.fixture(scope="module")
def tpm_server() -> Iterator[ProcessClass]:
    with SimulatorProcess(tpm=72_000) as sim:
        yield sim


def test_requests_per_minute_burst_then_hold_within_2_percent_over_10_seconds(rpm_server: ProcessClass) -> None:
    check_requests_limit(rpm_server, rpm=600, seconds=10.0)


def test_tokens_per_minute_hold_within_2_percent_over_6_seconds(tpm_server: ProcessClass) -> None:
    check_tokens_limit(tpm_server, tpm=72_000, seconds=6.0, max_tokens=40)


@pytest.mark.slow
def test_limits_hold_within_2_percent_over_60_seconds() -> None:
    with SimulatorProcess(rpm=600) as rpm_sim, SimulatorProcess(tpm=30_000) as tpm_sim:
        check_requests_limit(rpm_sim, rpm=600, seconds=60.0)
        check_tokens_limit(tpm_sim, tpm=30_000, seconds=60.0, max_tokens=40)
