"""``skilltrain serve``: the extraction model behind an HTTP API on Ray Serve.

Locally (no ``--address``, no ``$RAY_ADDRESS``) it starts a private Ray, deploys, prints the URL and
serves until Ctrl-C, then stops Serve and Ray. With ``--address`` it deploys onto that cluster and
returns, leaving the application running there (``serve shutdown`` or ``serve delete skilltrain``
removes it). ``--print-config`` only prints the same deployment as a Serve config file, for
``serve deploy`` or a KubeRay RayService; it starts nothing.

Needs the ``serve`` extra (``pip install 'esco-skillgen[serve]'``); this module imports nothing of
Ray Serve until it runs, so ``skilltrain --help`` works without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from skillgen.common import ESCO_HELP, UserError, is_uri
from skilltrain.extraction.backend_names import BACKENDS
from skilltrain.serve.config import DEFAULT_PORT, LOOPBACK, AppConfig, Autoscale, HttpConfig, ServeConfig

HELP = "serve skill extraction over HTTP on Ray Serve (batching across requests, replicas, limits, auth)"
DESCRIPTION = (
    "Deploy the model behind POST /v1/extract, GET /v1/model and GET /healthz (OpenAPI at /docs) on Ray Serve: "
    "concurrent requests are batched into one encoder call, replicas scale with --replicas or --autoscale, "
    "and what a caller may send is capped. Binds 127.0.0.1 unless --host says otherwise."
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _autoscale(text: str) -> Autoscale:
    try:
        low, high = (int(part) for part in text.split(","))
        return Autoscale(min_replicas=low, max_replicas=high)
    except (ValueError, ValidationError):
        raise argparse.ArgumentTypeError(f"expected MIN,MAX with 0 <= MIN <= MAX and MAX >= 1 (got {text!r})") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = AppConfig()
    parser.add_argument("--model", default="minilm",
                        help="model dir (local path or s3:// URI, readable from every node) or a name: minilm, mpnet")
    parser.add_argument("--esco", type=Path, default=None, help=ESCO_HELP)
    parser.add_argument("--host", default=LOOPBACK, help="address the HTTP proxy binds (0.0.0.0: every interface)")
    parser.add_argument("--port", type=_positive_int, default=DEFAULT_PORT, help="HTTP port")
    parser.add_argument("--address", default=None,
                        help="deploy onto this Ray cluster and return (e.g. auto, ray://head:10001); default: $RAY_ADDRESS, "
                             "else a private local Ray that serves until Ctrl-C")
    scale = parser.add_argument_group("replicas and batching")
    scale.add_argument("--replicas", type=_positive_int, default=defaults.replicas, help="model replicas")
    scale.add_argument("--autoscale", type=_autoscale, default=None, metavar="MIN,MAX",
                       help="let Serve scale the replicas between MIN and MAX (instead of --replicas)")
    scale.add_argument("--device", choices=("cpu", "cuda"), default=defaults.device, help="cuda: one GPU per model replica")
    scale.add_argument("--cpus-per-replica", type=float, default=defaults.cpus_per_replica,
                       help="CPUs reserved per model replica (= its encoder threads)")
    scale.add_argument("--backend", choices=BACKENDS, default=None, help="sentence encoder backend (default: as skilltrain extract)")
    scale.add_argument("--max-seq-length", type=_positive_int, default=None, help="token limit per sentence (default: the model's)")
    scale.add_argument("--max-batch-size", type=_positive_int, default=None,
                       help="sentences one model call gathers from concurrent requests (default: 64 on CPU, 512 on GPU)")
    scale.add_argument("--batch-wait-ms", type=float, default=defaults.batch_wait_ms,
                       help="how long a model call waits for more sentences before it runs")
    limits = parser.add_argument_group("limits and auth")
    limits.add_argument("--max-texts", type=_positive_int, default=defaults.max_texts, help="texts per request (more: HTTP 413)")
    limits.add_argument("--max-chars", type=_positive_int, default=defaults.max_chars, help="characters per text (more: HTTP 413)")
    limits.add_argument("--max-top-k", type=_positive_int, default=defaults.max_top_k, help="largest top_k a request may ask for (more: 422)")
    limits.add_argument("--request-timeout-s", type=float, default=defaults.request_timeout_s,
                        help="a request not answered in this time gets HTTP 503")
    limits.add_argument("--api-key-env", default=None, metavar="NAME",
                        help="require 'Authorization: Bearer <key>' on every request, the key read from $NAME on every node")
    parser.add_argument("--print-config", action="store_true",
                        help="print this deployment as a Serve config file (for `serve deploy`, KubeRay) and exit")


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The one config object, or a one-line error naming the flag."""
    if args.autoscale is not None and args.replicas != AppConfig().replicas:
        raise UserError("--replicas and --autoscale: give one of them")
    try:
        app = AppConfig(
            model=args.model, esco=str(args.esco) if args.esco else None, backend=args.backend, device=args.device,
            max_seq_length=args.max_seq_length, replicas=args.replicas, autoscale=args.autoscale,
            cpus_per_replica=args.cpus_per_replica, max_batch_size=args.max_batch_size, batch_wait_ms=args.batch_wait_ms,
            max_texts=args.max_texts, max_chars=args.max_chars, max_top_k=args.max_top_k,
            request_timeout_s=args.request_timeout_s, api_key_env=args.api_key_env,
        )
        return ServeConfig(http=HttpConfig(host=args.host, port=args.port), app=app)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        flag = "--" + str(error["loc"][0]).replace("_", "-") if error["loc"] else "options"
        raise UserError(f"{flag}: {error['msg'].removeprefix('Value error, ')}") from None


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.print_config:
        sys.stdout.write(config.serve_yaml())
        return 0
    from skillgen.common import init_ray, resolve_address

    local = resolve_address(args.address) == "local"
    _check_before_deploy(config, local)
    # replicas log to Ray's log files, not here: a failing replica's traceback is not the user's error line
    init_ray(args.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"skilltrain: deploying {config.app.model} (the first start on a node also encodes the taxonomy's skills; "
          "minutes on a small CPU)", file=sys.stderr)
    try:
        from skilltrain.serve.deploy import deploy, logs_dir

        url = deploy(config)
        print(f"skilltrain: serving {config.app.model} at {url} (POST /v1/extract, GET /v1/model; OpenAPI at {url}/docs; "
              f"replica logs in {logs_dir()})", file=sys.stderr)
        if not local:
            return 0
        print("skilltrain: Ctrl-C stops the service", file=sys.stderr)
        _wait_for_signal()
        return 0
    finally:
        if local:  # the private Ray goes, and Serve with it (serve.shutdown first only adds Ray's noise about its controller)
            import ray

            ray.shutdown()


def _check_before_deploy(config: ServeConfig, local: bool) -> None:
    """What can be checked here fails here, in one line, before Ray starts. On a cluster the model path and the
    key's variable are the nodes' business: a replica that lacks them fails the deployment with one line."""
    missing = [name for name in ("fastapi", "uvicorn", "starlette") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"skilltrain serve needs Ray Serve ({', '.join(missing)} missing): pip install 'esco-skillgen[serve]'")
    if not local:
        return
    from skilltrain.serve.deploy import check_port_free

    app = config.app
    if app.api_key_env is not None and not os.environ.get(app.api_key_env, "").strip():
        raise UserError(f"--api-key-env: ${app.api_key_env} is not set or empty (export it before serving)")
    if not is_uri(app.model):
        from skilltrain.model import check_encoder_dir

        check_encoder_dir(app.model)
    if app.esco is not None and not Path(app.esco).exists():
        raise UserError(f"--esco {app.esco}: file does not exist")
    check_port_free(config.http.host, config.http.port)


def _wait_for_signal() -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
