"""Connecting to Ray the way users expect: a given address, else the job's cluster, else a fresh local one.

Plain ``ray.init()`` also joins whatever cluster ``/tmp/ray/ray_current_cluster`` names, the
last ``ray start`` on the machine, even one that has since died, and then hangs retrying it.
Our default is a new local instance (``address="local"``) unless an address is given or
``RAY_ADDRESS`` is set (as ``ray job submit`` does for its entrypoint).
"""

from __future__ import annotations

import os
from typing import Any

from skillgen.common.errors import UserError


def resolve_address(address: str | None) -> str:
    return address or os.environ.get("RAY_ADDRESS") or "local"


def init_ray(address: str | None = None, **kwargs: Any) -> None:
    """``ray.init`` once per process; extra kwargs (e.g. ``num_cpus``) apply to a new local instance only."""
    import ray

    if ray.is_initialized():
        return
    resolved = resolve_address(address)
    if resolved != "local":
        kwargs = {k: v for k, v in kwargs.items() if k not in ("num_cpus", "num_gpus", "include_dashboard")}
    kwargs.setdefault("log_to_driver", True)
    try:
        ray.init(address=resolved, **kwargs)
    except (ConnectionError, TimeoutError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot connect to Ray at '{resolved}' (from --address/ray_address or $RAY_ADDRESS): {first}") from None
