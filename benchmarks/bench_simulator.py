"""Capacity of the LLM simulator on this machine, in requests per second.

The server runs in its own process (``SimulatorProcess``: the real
``skillgen sim-server``), with no rate limits; load comes from one or more
*other* processes, each an asyncio loop of aiohttp requests kept at a fixed
concurrency for a fixed time (closed loop). Requests are real generation
calls: a skillgen prompt for one of several ESCO-like skills, ``json_schema``
response format, ``max_tokens``, and a unique ``X-Request-Key``. Throughput
counts 200 responses only, and is cross-checked against the server's own
``/v1/stats``. The server's CPU time per request (from ``/proc``) is reported
too: on a shared or busy machine, requests/s says what this run got, while
1 / CPU-per-request says what one free core can serve.

Two scenarios matter:

* raw capacity: ``--latency fixed:0`` (the server's CPU is the limit);
* the generation benchmarks' need: ``--latency fixed:1`` with hundreds of
  concurrent requests (asyncio sleeps, so the limit is concurrency/latency
  until the CPU saturates).

    .venv/bin/python benchmarks/bench_simulator.py --latency fixed:0 --concurrency 64 --duration 10
    .venv/bin/python benchmarks/bench_simulator.py --latency fixed:1 --concurrency 400 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from skillgen.llm.prompts import build_messages, response_format  # noqa: E402
from skillgen.simulator import SimulatorProcess  # noqa: E402
from skillgen.common.taxonomy import Skill  # noqa: E402

SKILLS = [
    Skill("b1", "manage musical staff", ("manage staff of music", "direct musical staff"),
          "Assign and manage staff tasks in areas such as scoring, arranging, copying music and vocal coaching."),
    Skill("b2", "labour legislation", ("employment law",),
          "Legislation, on a national or international level, that governs labour conditions in various fields."),
    Skill("b3", "operate forklift", ("drive forklift", "use forklift"), "Operate a forklift to lift, move and stack goods."),
    Skill("b4", "Java (computer programming)", ("Java",),
          "The techniques and principles of software development, such as analysis, algorithms, coding, testing."),
]
MODEL = "gpt-4o-mini"


def _payloads() -> list[dict[str, Any]]:
    return [{"model": MODEL, "messages": build_messages(s, 10), "response_format": response_format(), "max_tokens": 600}
            for s in SKILLS]


async def _drive(base_url: str, concurrency: int, duration: float, worker: int) -> dict[str, Any]:
    payloads = _payloads()
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration
        headers = {"Authorization": "Bearer sk-bench"}

        async def one_slot(slot: int) -> None:
            nonlocal errors
            i = 0
            while loop.time() < deadline:
                body = payloads[(slot + i) % len(payloads)]
                key = {"X-Request-Key": f"w{worker}-s{slot}-{i}"}
                started = loop.time()
                try:
                    async with session.post(f"{base_url}/chat/completions", json=body, headers={**headers, **key}) as resp:
                        await resp.read()
                        if resp.status == 200:
                            latencies.append(loop.time() - started)
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                i += 1

        started, cpu_started = loop.time(), time.process_time()
        await asyncio.gather(*(one_slot(s) for s in range(concurrency)))
        elapsed, cpu = loop.time() - started, time.process_time() - cpu_started
    return {"ok": len(latencies), "errors": errors, "elapsed": elapsed, "latencies": latencies, "cpu": cpu}


def _client_process(args: tuple[str, int, float, int]) -> dict[str, Any]:
    base_url, concurrency, duration, worker = args
    return asyncio.run(_drive(base_url, concurrency, duration, worker))


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``), to express cost independently of machine load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(latency: str, concurrency: int, duration: float, clients: int, warmup: float) -> dict[str, Any]:
    with SimulatorProcess(latency=latency) as sim:
        assert sim.pid is not None
        base_url = sim.base_url or ""
        per_client = max(1, concurrency // clients)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(clients) as pool:
            if warmup > 0:  # connections, tokenizer, caches
                pool.map(_client_process, [(base_url, min(per_client, 16), warmup, 1000 + w) for w in range(clients)])
            sim.reset_stats()
            cpu_before = _cpu_seconds(sim.pid)
            results = pool.map(_client_process, [(base_url, per_client, duration, w) for w in range(clients)])
            cpu = _cpu_seconds(sim.pid) - cpu_before
        stats = sim.stats()
    ok = sum(r["ok"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    return {
        "latency": latency,
        "concurrency": per_client * clients,
        "client_processes": clients,
        "duration_s": round(elapsed, 2),
        "requests_per_s": round(ok / elapsed, 1),
        "ok": ok,
        "errors": sum(r["errors"] for r in results),
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(1000 * _quantile(latencies, 0.99), 1),
        "server_served": stats["served"],
        "server_cpu_ms_per_request": round(1000 * cpu / max(1, ok), 3),
        "client_cpu_ms_per_request": round(1000 * sum(r["cpu"] for r in results) / max(1, ok), 3),
        "server_capacity_per_core_req_s": round(ok / cpu, 1) if cpu else None,
        "server_max_served_per_key": max(stats["served_by_key"].values(), default=0),
        "completion_tokens_per_request": round(stats["completion_tokens_billed"] / max(1, stats["served"]), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", default="fixed:0", help="server latency spec (see skillgen sim-server --help)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight, over all client processes")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured load")
    parser.add_argument("--clients", type=int, default=1, help="client processes generating the load")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    args = parser.parse_args()
    result = run(args.latency, args.concurrency, args.duration, args.clients, args.warmup)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
