"""``skillgen sim-server``: run the LLM simulator in the foreground.

Heavy imports (aiohttp, tiktoken) happen in :func:`run`, so listing
``skillgen --help`` does not pay for them. SIGTERM and SIGINT stop the server
gracefully (in-flight requests get ``--shutdown-timeout``), then
``--stats-file`` is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from pydantic import ValidationError

from skillgen.common.errors import UserError
from skillgen.simulator.config import DEFAULT_MODELS, REQUIRE_KEY_ENV, SimulatorConfig

__all__ = ["DESCRIPTION", "HELP", "PARENT_POLL_S", "add_arguments", "config_from_args", "run"]

HELP = "run the OpenAI-compatible LLM simulator (rate limits, faults, job-ad sentences)"
DESCRIPTION = (
    "Serve POST /v1/chat/completions and GET /v1/models like OpenAI, with per-key RPM/TPM limits, "
    "x-ratelimit-* headers, injected faults and latency, and job-ad sentences grounded in the skill a "
    "skillgen prompt names. GET /v1/stats reports what was served and billed; POST /v1/stats/reset zeroes it. "
    "Any non-empty bearer key is accepted unless --require-key is given. "
    "Header X-Sim-Fault: KIND forces a fault on one request; X-Request-Key: KEY is counted per key."
)
PARENT_POLL_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (keep loopback unless you mean it)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    parser.add_argument("--rpm", type=int, default=0, help="requests per minute per API key (0: unlimited)")
    parser.add_argument("--tpm", type=int, default=0,
                        help="tokens per minute per API key, charged as prompt + n x max completion tokens (0: unlimited)")
    parser.add_argument("--latency", default="fixed:0",
                        help="service time: fixed:S | uniform:LO,HI | lognormal:MU,SIGMA (seconds)")
    parser.add_argument("--fault-rate", default="", metavar="KIND=RATE,...",
                        help="fault probabilities per request; kinds: 429 500 502 503 hang drop malformed "
                             "wrong_count empty context_length invalid_key insufficient_quota")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault, latency and content RNGs")
    parser.add_argument("--hang-seconds", type=float, default=120.0, help="how long a 'hang' fault holds a request")
    # The default is read in config_from_args, not here: --help prints defaults, and must never print a key.
    parser.add_argument("--require-key", default=None, metavar="KEY",
                        help=f"accept only this bearer key, 401 otherwise; if not given, ${REQUIRE_KEY_ENV} "
                             "(prefer the variable: command lines are visible to other users)")
    parser.add_argument("--stats-file", type=Path, help="write the final /v1/stats JSON here on shutdown")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated ids for /v1/models")
    parser.add_argument("--context-window", type=int, default=128_000,
                        help="prompt + max completion tokens above this get 400 context_length_exceeded")
    parser.add_argument("--assumed-max-tokens", type=int, default=4096,
                        help="completion tokens the TPM limiter charges when a request sets no max_tokens")
    parser.add_argument("--shutdown-timeout", type=float, default=1.0, help="grace for in-flight requests on stop")
    b = parser.add_argument_group("Batch API (/v1/files, /v1/batches)")
    b.add_argument("--batch-seconds-per-line", type=float, default=0.001, help="processing time of one batch line")
    b.add_argument("--batch-validating-s", type=float, default=0.05, help="time a batch spends in 'validating'")
    b.add_argument("--batch-finalizing-s", type=float, default=0.05, help="time a batch spends in 'finalizing'")
    b.add_argument("--batch-expire-s", type=float, default=86400.0,
                   help="completion window: a batch not done this long after creation expires")
    b.add_argument("--batch-enqueued-token-limit", type=int, default=0,
                   help="enqueued tokens (prompt + max_tokens) per model across open batches; above it a batch fails (0: unlimited)")
    parser.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)  # for SimulatorProcess
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # exit when this process is gone


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    try:
        return SimulatorConfig(
            host=args.host, port=args.port, rpm=args.rpm, tpm=args.tpm, latency=args.latency,
            fault_rates=args.fault_rate, seed=args.seed, hang_seconds=args.hang_seconds,
            require_key=args.require_key or os.environ.get(REQUIRE_KEY_ENV) or None, stats_file=args.stats_file,
            models=args.models,
            context_window=args.context_window, assumed_max_tokens=args.assumed_max_tokens,
            shutdown_timeout=args.shutdown_timeout, batch_seconds_per_line=args.batch_seconds_per_line,
            batch_validating_s=args.batch_validating_s, batch_finalizing_s=args.batch_finalizing_s,
            batch_expire_s=args.batch_expire_s, batch_enqueued_token_limit=args.batch_enqueued_token_limit,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise UserError(f"sim-server: {problems}") from None


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        asyncio.run(_main(config, args.ready_file, args.parent_pid))
    except OSError as exc:
        raise UserError(f"sim-server: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    return 0


async def _main(config: SimulatorConfig, ready_file: Path | None, parent_pid: int | None) -> None:
    from skillgen.simulator.server import SimulatorServer, serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watchdog = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None

    def ready(base_url: str, server: SimulatorServer) -> None:
        print(f"skillgen simulator listening on {base_url}", flush=True)
        if ready_file is not None:
            tmp = ready_file.with_name(ready_file.name + ".tmp")
            tmp.write_text(json.dumps({"base_url": base_url, "pid": os.getpid()}))
            os.replace(tmp, ready_file)  # the parent never reads half a file

    try:
        await serve(config, stop, ready)
    finally:
        if watchdog is not None:
            watchdog.cancel()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Stop when the parent is gone (we get re-parented), e.g. a test runner killed with SIGKILL."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            stop.set()
            return
        await asyncio.sleep(PARENT_POLL_S)
