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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest

from skillgen.simulator import SimulatorProcess
from skillgen.simulator.process import SimulatorProcess as ProcessClass
from skillgen.simulator.ratelimit import CLOCK_HEADER
from skillgen.llm.tokens import count_tokens

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hi."}]
PROMPT_TOKENS = count_tokens(MODEL, MESSAGES)
TOLERANCE = 0.02  # the limiter never admits more than this over the limit
# Below the limit is the test client's shortfall, not the limiter's: on a loaded 2-core box an
# asyncio client cannot keep a 2x offer evenly spaced over a short window. The 60 s test holds
# both sides to 2%; the short default one holds the enforcement side to 2% and this one looser.
SHORT_WINDOW_SHORTFALL = 0.10


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


def within(admitted: float, expected: float, shortfall: float) -> bool:
    return expected * (1 - shortfall) <= admitted <= expected * (1 + TOLERANCE)


def check_requests_limit(sim: ProcessClass, rpm: int, seconds: float, shortfall: float = TOLERANCE) -> None:
    window = measure(sim.base_url or "", "sk-rpm", max_tokens=5, per_second=rpm / 60, seconds=seconds)
    expected = rpm / 60 * window.seconds
    assert window.rejected > 0.3 * window.admitted  # the offer really was above the limit
    assert within(window.admitted, expected, shortfall), (window, expected)
    # The fresh key first burst its whole bucket (one minute's allowance), plus what refilled meanwhile.
    burst_max = rpm + rpm / 60 * window.drain.seconds + 1
    assert rpm <= window.drain.admitted <= burst_max, (window.drain, burst_max)


def check_tokens_limit(sim: ProcessClass, tpm: int, seconds: float, max_tokens: int, shortfall: float = TOLERANCE) -> None:
    cost = PROMPT_TOKENS + max_tokens
    # One request that costs the whole (full) bucket drains it exactly.
    window = measure(sim.base_url or "", "sk-tpm", max_tokens=max_tokens, per_second=tpm / 60 / cost,
                     seconds=seconds, drain_max_tokens=tpm - PROMPT_TOKENS)
    expected = tpm / 60 * window.seconds
    admitted_tokens = window.admitted * cost
    assert window.rejected > 0.3 * window.admitted
    assert within(admitted_tokens, expected, shortfall), (window, admitted_tokens, expected)


def both_concurrently(rpm: int, tpm: int, seconds: float, shortfall: float = TOLERANCE) -> None:
    """One server limited on requests, one on tokens, started and measured side by side to save wall time.

    Each check is timed on its own server's limiter clock, so running them together costs no precision.
    """
    with ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        rpm_sim, tpm_sim = pool.map(lambda sim: stack.enter_context(sim),
                                    [SimulatorProcess(rpm=rpm), SimulatorProcess(tpm=tpm)])
        checks = [pool.submit(check_requests_limit, rpm_sim, rpm, seconds, shortfall),
                  pool.submit(check_tokens_limit, tpm_sim, tpm, seconds, 40, shortfall)]
        for check in checks:
            check.result()


@pytest.mark.slow  # ~10 s of real time; .ci/run runs it (the default suite stays under 6 min)
def test_requests_and_tokens_per_minute_never_exceed_the_limit_by_2_percent_over_8_seconds() -> None:
    both_concurrently(rpm=600, tpm=72_000, seconds=8.0, shortfall=SHORT_WINDOW_SHORTFALL)


@pytest.mark.slow
def test_limits_hold_within_2_percent_over_60_seconds() -> None:
    both_concurrently(rpm=600, tpm=30_000, seconds=60.0)
