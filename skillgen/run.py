"""The public entry point of a generation run: one function, two drivers.

``config.mode`` picks the driver: online mode on Ray actors
(:mod:`skillgen.online.driver`) or the provider's Batch API
(:mod:`skillgen.batch.driver`). Both plan with :mod:`skillgen.plan` and
return the same :class:`~skillgen.plan.RunSummary`.
"""

from __future__ import annotations

from typing import Any

from skillgen.config import GenerationConfig
from skillgen.plan import RunSummary

__all__ = ["RunSummary", "run_generation"]


def run_generation(config: GenerationConfig, progress: bool = True, on_update: Any = None) -> RunSummary:
    """Generate sentences for the selected skills into ``config.run_dir``; resumable, budget-aware.

    ``on_update(scheduler_state, budget_snapshot)`` is called on every driver tick of online mode (benchmarks, UIs).
    A second run on the same run dir is refused (UserError naming the holder of the run dir lease).
    ``config.mode == "batch"`` sends the same requests through the Batch API instead (:mod:`skillgen.batch`).
    """
    if config.mode == "batch":
        from skillgen.batch.driver import run_batch

        return run_batch(config, progress=progress)
    from skillgen.online.driver import run_online

    return run_online(config, progress=progress, on_update=on_update)
