"""``skilltrain serve`` under a bounded load on loopback, next to the same model's in-process SkillExtractor.

One run, one machine: a private local Ray (``--cpus``, 2 by default) serves the model with each
``--config`` in turn; for one-sentence and ten-sentence job ads it measures

* **in process**: ``SkillExtractor.extract`` on the same ads, in chunks (``--chunk-sentences`` sentences
  per call), in this process with all cores: what a user gets without a server. Timed right before
  and right after each shape's served runs (the mean is the reference), so load drifting on a shared
  machine hits both sides alike;
* **served**: ``CLIENTS`` concurrent HTTP clients (1, 8, 32; aiohttp, keep-alive) each sending one ad
  per ``POST /v1/extract`` until ``--requests-per-client`` are answered or ``--time-limit-s`` passes:
  throughput (sentences/s, requests/s), p50/p99 latency, and errors (any non-200 is counted, and fails
  the run's check).

For every load it also reports where the time goes, from the ``Server-Timing`` header the ingress sets
(medians, ms): *proxy* (client round trip minus the ingress: HTTP, Serve's proxy, the hop to the ingress),
*ingress* (parsing, limits, JSON, and the hop to the model replica including the wait at its door while it
runs the batch before), *queue* (in the replica's batch queue) and *model* (the batch's split + encode +
rank); and the CPU milliseconds per request each part used (from /proc: Serve's proxy, ingress, model
replicas and controller, and this process's clients), which on a shared machine is the steadier number;
and the mean sentences per model call (the replicas' ``skilltrain_serve_sentences`` and ``_batches``
counters, scraped from Ray's Prometheus endpoint). The check that counts: at 32 clients with ten-sentence ads, served
sentences/s >= 0.8x in process (``checks.ratio_32x10``, the best config's).

    # on a quiet 2-core box; on the shared development box (load 12-30) these took 18.5 min and 9 min:
    .venv/bin/python benchmarks/bench_serve.py --model runs/local/model --out benchmarks/results/serve_mainjob_2cpu.json
    .venv/bin/python benchmarks/bench_serve.py --model minilm --out benchmarks/results/serve_minilm_2cpu.json
    # a smoke run: one config, 8 requests per client or 30 s per load (2.5 min there, index cached)
    .venv/bin/python benchmarks/bench_serve.py --quick --model minilm

The model directory is copied to a temp dir first (the replicas cache the skill index and ONNX graph
next to the model; the run dir stays untouched). Only stdlib at module level.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))  # helpers/ports.py, helpers/promscrape.py

from bench_extract import load_avg, unique_sentences  # noqa: E402

CLIENTS = (1, 8, 32)
METRICS_LAG_S = 2.5
SHAPES = (1, 10)  # sentences per ad
#: serving configurations tried by default (key=value of AppConfig fields); the first is the recommended one
DEFAULT_CONFIGS = ("replicas=2 cpus_per_replica=1 max_batch_size=64 batch_wait_ms=5",
                   "replicas=1 cpus_per_replica=2 max_batch_size=64 batch_wait_ms=5")


def make_ads(sentences_per_ad: int, count: int, pool: list[str], offset: int = 0) -> list[str]:
    """``count`` ads of ``sentences_per_ad`` distinct bullet lines each (the splitter gives one sentence per line)."""
    ads = []
    for n in range(count):
        start = (offset + n * sentences_per_ad) % (len(pool) - sentences_per_ad)
        ads.append("\n".join(f"- {s}" for s in pool[start : start + sentences_per_ad]))
    return ads


def in_process_rate(extractor: Any, ads: list[str], chunk_sentences: int, sentences_per_ad: int) -> dict[str, float]:
    chunk = max(1, chunk_sentences // sentences_per_ad)
    started = time.perf_counter()
    sentences = 0
    for i in range(0, len(ads), chunk):
        sentences += sum(len(t.sentences) for t in extractor.extract(ads[i : i + chunk], top_k=5))
    seconds = time.perf_counter() - started
    return {"sentences": sentences, "seconds": seconds, "sentences_per_s": sentences / seconds}


def server_timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, value = part.strip().partition(";dur=")
        if value:
            out[name] = float(value)
    return out


async def load(url: str, ads: list[str], clients: int, per_client: int, time_limit_s: float, timeout_s: float) -> dict[str, Any]:
    """``clients`` concurrent clients, each sending ads one per request; bounded in count and time."""
    import aiohttp

    latencies: list[float] = []
    timings: list[dict[str, float]] = []
    errors: dict[str, int] = {}
    sentences = 0
    next_ad = 0
    started = time.perf_counter()

    async def one_client(session: aiohttp.ClientSession) -> None:
        nonlocal sentences, next_ad
        for _ in range(per_client):
            if time.perf_counter() - started > time_limit_s:
                return
            ad = ads[next_ad % len(ads)]
            next_ad += 1
            sent = time.perf_counter()
            try:
                async with session.post(f"{url}/v1/extract", json={"texts": [ad]}) as response:
                    body = await response.json()
                    elapsed = time.perf_counter() - sent
                    if response.status != 200:
                        errors[str(response.status)] = errors.get(str(response.status), 0) + 1
                        continue
                    latencies.append(elapsed)
                    sentences += len(body["results"][0]["sentences"])
                    timings.append({"client": elapsed * 1e3, **server_timing(response.headers.get("Server-Timing", ""))})
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        await asyncio.gather(*(one_client(session) for _ in range(clients)))
    seconds = time.perf_counter() - started
    return {
        "clients": clients, "requests": len(latencies), "errors": errors, "seconds": seconds, "sentences": sentences,
        "sentences_per_s": sentences / seconds, "requests_per_s": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3,
        "time_split_ms": time_split(timings),
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def time_split(timings: list[dict[str, float]]) -> dict[str, float]:
    """Median of each part of a request's time (ms): proxy, ingress, queue, model, the replica's rest."""
    if not timings or "ingress" not in timings[0]:
        return {}
    parts = {
        "proxy": [t["client"] - t["ingress"] for t in timings],
        "ingress": [t["ingress"] - t["replica"] for t in timings],
        "queue": [t["queue"] for t in timings],
        "model": [t["model"] for t in timings],
        "replica_other": [t["replica"] - t["queue"] - t["model"] for t in timings],
        "total": [t["client"] for t in timings],
    }
    return {name: round(statistics.median(values), 2) for name, values in parts.items()}


#: Serve's processes by the title Ray gives them (ray::<actor class>...)
PROCESS_GROUPS = {"proxy": "ray::ProxyActor", "ingress": "ray::ServeReplica:skilltrain:SkillAPI",
                  "model": "ray::ServeReplica:skilltrain:SkillModel", "controller": "ray::ServeController"}


def serve_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this Ray's Serve processes (by group, from /proc) and by this process (the clients).

    CPU time rather than wall time: on a shared machine it says what each part costs per request, whatever else runs.
    """
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    tick = os.sysconf("SC_CLK_TCK")
    out = dict.fromkeys(PROCESS_GROUPS, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = next((g for g, prefix in PROCESS_GROUPS.items() if title.startswith(prefix)), None)
        if group is not None and int(stat[1]) == raylet:  # ppid: a worker of this Ray, not another user's
            out[group] += (int(stat[11]) + int(stat[12])) / tick
    out["clients"] = time.process_time()
    return out


def cpu_ms_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    return {k: round((after[k] - before[k]) * 1e3 / max(1, requests), 2) for k in after}


def batch_totals() -> tuple[float, float]:
    """(sentences, model calls) so far, from the replicas' skilltrain_serve_* counters in Prometheus."""
    from helpers.promscrape import exported, metrics_url, scrape

    time.sleep(METRICS_LAG_S)  # the replicas push every second
    samples = scrape(metrics_url(), (exported("skilltrain_serve_"),))
    # one series per replica process (and a replaced replica's lingers): add them up
    return tuple(sum(s.value for s in samples if s.name == exported(f"skilltrain_serve_{name}_total")) for name in ("sentences", "batches"))


def mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    calls, sentences = after[1] - before[1], after[0] - before[0]
    return round(sentences / calls, 1) if calls > 0 and sentences >= 0 else None  # None: a replaced replica's series left


def parse_config(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in text.split():
        key, _, value = pair.partition("=")
        out[key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false", "null") else value
    return out


def bench_config(url: str, extractor: Any, pool: list[str], args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for shape in SHAPES:
        in_process_ads = make_ads(shape, max(1, args.in_process_sentences // shape), pool)
        before = in_process_rate(extractor, in_process_ads, args.chunk_sentences, shape)
        served = {}
        for clients in CLIENTS:
            ads = make_ads(shape, clients * args.requests_per_client, pool, offset=clients * 7919)
            before_batches, before_cpu = batch_totals(), serve_cpu_seconds()
            served[clients] = asyncio.run(load(url, ads, clients, args.requests_per_client, args.time_limit_s,
                                               args.request_timeout_s + 10))
            served[clients]["cpu_ms_per_request"] = cpu_ms_per_request(before_cpu, serve_cpu_seconds(), served[clients]["requests"])
            served[clients]["mean_batch_sentences"] = mean_batch(before_batches, batch_totals())
            print(f"  {shape:>2}-sentence ads, {clients:>2} clients: {served[clients]['sentences_per_s']:7.1f} sentences/s, "
                  f"p50 {served[clients]['p50_ms']:7.1f} ms, p99 {served[clients]['p99_ms']:7.1f} ms, "
                  f"errors {served[clients]['errors'] or 0}, mean batch {served[clients]['mean_batch_sentences']} sentences; "
                  f"median ms {served[clients]['time_split_ms']}; CPU ms/request {served[clients]['cpu_ms_per_request']}",
                  file=sys.stderr)
        after = in_process_rate(extractor, in_process_ads, args.chunk_sentences, shape)
        in_process = (before["sentences_per_s"] + after["sentences_per_s"]) / 2
        results[f"{shape}_sentence"] = {
            "in_process_sentences_per_s": in_process, "in_process_runs": [before, after],
            "served": served, "ratio": {c: served[c]["sentences_per_s"] / in_process for c in CLIENTS},
        }
        print(f"  {shape:>2}-sentence ads in process: {in_process:7.1f} sentences/s "
              f"(before {before['sentences_per_s']:.1f}, after {after['sentences_per_s']:.1f})", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="model dir or name (copied to a temp dir first)")
    parser.add_argument("--esco", default=None, help="taxonomy (default: the bundled ESCO)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (and torch threads in process)")
    parser.add_argument("--config", action="append", default=None, metavar="KEY=VALUE ...",
                        help=f"a serving configuration, repeatable (default: {' | '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--requests-per-client", type=int, default=None, help="default: 20 (8 with --quick)")
    parser.add_argument("--time-limit-s", type=float, default=None, help="per load phase (default: 60, 30 with --quick)")
    parser.add_argument("--in-process-sentences", type=int, default=None, help="default: 640 (320 with --quick)")
    parser.add_argument("--chunk-sentences", type=int, default=320, help="sentences per in-process extract() call")
    parser.add_argument("--request-timeout-s", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="smaller load, first config only")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the model copy (and its cached skill index) here for the next run (default: a temp dir)")
    args = parser.parse_args(argv)
    configs = args.config or (DEFAULT_CONFIGS[:1] if args.quick else DEFAULT_CONFIGS)
    args.requests_per_client = args.requests_per_client or (8 if args.quick else 20)
    args.time_limit_s = args.time_limit_s or (30.0 if args.quick else 60.0)
    args.in_process_sentences = args.in_process_sentences or (320 if args.quick else 640)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray runs workers at nice 15; the replicas must compete for the cores on the in-process side's terms
    os.environ.setdefault("RAY_worker_niceness", "0")
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        result = run(args, configs, args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
            result = run(args, configs, Path(tmp))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0 if result["checks"]["no_errors"] else 1


def run(args: argparse.Namespace, configs: list[str], tmp: Path) -> dict[str, Any]:
    import ray
    import torch

    from helpers.ports import free_ports
    from helpers.promscrape import METRICS_SYSTEM_CONFIG
    from skilltrain import SkillExtractor
    from skilltrain.model import check_encoder_dir
    from skilltrain.serve.deploy import deploy, shutdown
    from skilltrain.serve.config import AppConfig, HttpConfig, ServeConfig

    source = check_encoder_dir(args.model)
    model = tmp / f"{source.name}-{hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]}"
    if not model.exists():
        shutil.copytree(source, model)
    started, load_before = time.perf_counter(), load_avg()
    torch.set_num_threads(args.cpus)
    extractor = SkillExtractor.from_pretrained(model, args.esco, device="cpu")  # also builds the index the replicas load
    pool = [s for s in unique_sentences(6000) if len(extractor.split(s)) == 1]  # so an ad of n lines is n sentences
    port, metrics_port = free_ports(2)
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             _metrics_export_port=metrics_port, _system_config=METRICS_SYSTEM_CONFIG)
    runs = []
    try:
        for n, text in enumerate(configs):
            options = parse_config(text)
            app = AppConfig(model=str(model), esco=args.esco, request_timeout_s=args.request_timeout_s, **options)
            url = deploy(ServeConfig(http=HttpConfig(port=port), app=app)) if n == 0 else _redeploy(app, port)
            print(f"config {text}", file=sys.stderr)
            runs.append({"config": options, "results": bench_config(url, extractor, pool, args)})
    finally:
        shutdown()
    best = max(runs, key=lambda r: r["results"]["10_sentence"]["ratio"][32])
    return {
        "model": str(args.model), "scoring": extractor.encoder.scoring.scoring, "backend": extractor.backend,
        "machine": {"cpus": args.cpus, "cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
                    "load_avg_before": load_before, "load_avg_after": load_avg()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "config", "work_dir")},
        "runs": runs,
        "checks": {
            "ratio_32x10": best["results"]["10_sentence"]["ratio"][32], "best_config": best["config"],
            "meets_0.8x": best["results"]["10_sentence"]["ratio"][32] >= 0.8,
            "no_errors": all(not s["errors"] for r in runs for shape in r["results"].values() for s in shape["served"].values()),
        },
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _redeploy(app: Any, port: int) -> str:
    """The next configuration, once the last one is gone (an in-place update would wait for CPUs the old replicas
    hold); Serve keeps its proxy and port."""
    from ray import serve

    from skilltrain.serve.app import build_app
    from skilltrain.serve.config import APP_NAME

    serve.delete(APP_NAME)
    serve.run(build_app(app), name=APP_NAME, route_prefix="/")
    return f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    sys.exit(main())
