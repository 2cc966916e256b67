"""Starting Serve and deploying the application on the connected Ray, with one-line failures; stopping both.

Used by ``skilltrain serve`` and by the tests and benchmark, which deploy exactly as the command does.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from pathlib import Path
from typing import Iterator

from skillgen.common import UserError
from skilltrain.serve.config import APP_NAME, LOOPBACK, ServeConfig

_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")


def check_port_free(host: str, port: int) -> None:
    """Refuse a port in use before starting anything. Serve's proxy binds with SO_REUSEPORT, so a second
    ``skilltrain serve`` on the port of a running one would otherwise start, and the two would split the traffic."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except OSError as exc:
        raise UserError(f"--host/--port {host}:{port}: cannot listen there ({exc.strerror or exc}); choose another --port") from None


def deploy(config: ServeConfig) -> str:
    """Start Serve's proxies and deploy the application; returns its URL once every replica is up."""
    from ray import serve

    from skilltrain.serve.app import build_app

    with _quiet_serve_client():
        try:
            serve.start(http_options=config.http_options())
        except Exception as exc:  # noqa: BLE001 - Serve wraps the proxy's failure (a port in use) in a RayTaskError
            raise UserError(f"--host/--port {config.http.host}:{config.http.port}: {_failure(exc)}") from None
        try:
            serve.run(build_app(config.app), name=APP_NAME, route_prefix="/", blocking=False)
        except RuntimeError as exc:  # a replica's constructor failed
            raise UserError(f"deployment failed: {_failure(exc)}") from None
    host = config.http.host if config.http.host not in ("0.0.0.0", "::") else LOOPBACK
    return f"http://{host}:{config.http.port}"


@contextlib.contextmanager
def _quiet_serve_client() -> Iterator[None]:
    """Hold back the Serve client's INFO lines while deploying: after ``serve.start``, ``serve.run`` says the new
    http_options "will not be applied" (they were, by the start), and the caller prints its own ready line."""
    logger = logging.getLogger("ray.serve")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def logs_dir() -> str:
    """Where this Ray's Serve logs are (replicas, proxy, controller)."""
    import ray

    try:
        return str(Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve")
    except AttributeError:  # joined a cluster through Ray Client: the logs are on its nodes
        return "the Ray nodes' session logs (logs/serve)"


def _failure(exc: Exception) -> str:
    """The error line of the replica's traceback (in Serve's deployment status), else Serve's own message."""
    from ray import serve

    try:
        app = serve.status().applications.get(APP_NAME)
        messages = [d.message for d in app.deployments.values() if d.message] if app is not None else []
    except Exception:  # noqa: BLE001 - the status is a better message when there is one, nothing more
        messages = []
    for message in [*messages, str(exc)]:
        errors = [line.strip() for line in message.splitlines() if _ERROR_LINE.match(line.strip())]
        if errors:
            return errors[-1]
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def shutdown() -> None:
    """Stop Serve, then this process's Ray."""
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
