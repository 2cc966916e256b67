"""Connecting to Ray the way users expect: a given address, else the job's cluster, else a fresh local one.

Plain ``ray.init()`` also joins whatever cluster ``/tmp/ray/ray_current_cluster`` names, the
last ``ray start`` on the machine, even one that has since died, and then hangs retrying it.
Our default is a new local instance (``address="local"``) unless an address is given or
``RAY_ADDRESS`` is set (as ``ray job submit`` does for its entrypoint).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

from skillgen.common.errors import UserError

__all__ = ["RAY_INTERNAL_NOISE", "init_ray", "resolve_address"]


def resolve_address(address: str | None) -> str:
    return address or os.environ.get("RAY_ADDRESS") or "local"


# Lines Ray's own actors print that we cannot fix from here (Ray Train's PreemptionWatcher is created
# with an actor-handle argument and max_restarts > 0). Our own actors are built so they never trigger it.
RAY_INTERNAL_NOISE = ("has constructor arguments in the object store and max_restarts > 0",)


def init_ray(address: str | None = None, **kwargs: Any) -> None:
    """``ray.init`` once per process; extra kwargs (e.g. ``num_cpus``) apply to a new local instance only.

    A local instance we start keeps Ray 2.60's default token authentication, without Ray's
    notice about it: the user chose no cluster, so the notice only adds noise (see
    :func:`_quiet_auth_notice`).
    """
    import ray

    if ray.is_initialized():
        return
    resolved = resolve_address(address)
    if resolved != "local":
        kwargs = {k: v for k, v in kwargs.items() if k not in ("num_cpus", "num_gpus", "include_dashboard")}
    kwargs.setdefault("log_to_driver", True)
    try:
        with _quiet_auth_notice(resolved == "local"):
            ray.init(address=resolved, **kwargs)
    except (ConnectionError, TimeoutError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot connect to Ray at '{resolved}' (from --address/ray_address or $RAY_ADDRESS): {first}") from None
    if kwargs["log_to_driver"]:
        _filter_worker_logs(RAY_INTERNAL_NOISE)


@contextlib.contextmanager
def _quiet_auth_notice(local: bool) -> Iterator[None]:
    """Hold back Ray's "Token authentication is enabled for this Ray cluster" warning for a local
    instance this process starts. It cannot be avoided by setting ``RAY_AUTH_MODE=token`` here:
    Ray reads the mode when it is imported, and a mode set later splits the driver from its GCS.
    """
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = logger.level
    if local:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _filter_worker_logs(patterns: tuple[str, ...]) -> None:
    """Drop worker log lines containing ``patterns`` before Ray prints them on the driver's console.

    Uses Ray's driver-side log dispatcher (the handler ``ray.init`` registers as ``ray_print_logs``);
    if a future Ray renames it, nothing is filtered and nothing breaks.
    """
    try:
        from ray._private import worker as ray_worker
    except ImportError:  # pragma: no cover - layout of a future Ray
        return
    dispatcher = getattr(ray_worker, "global_worker_stdstream_dispatcher", None)
    printer = getattr(ray_worker, "print_to_stdstream", None)
    if dispatcher is None or printer is None or "ray_print_logs" not in [name for name, _ in getattr(dispatcher, "handlers", [])]:
        return

    def filtered(data: dict[str, Any]) -> None:
        lines = [line for line in data.get("lines", []) if not any(p in line for p in patterns)]
        if lines:
            printer({**data, "lines": lines}, ignore_prefix=ray_worker._should_ignore_worker_log_prefix(ray_worker.global_worker))

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", filtered)
