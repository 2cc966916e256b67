"""The public entry point of a generation run: one function, one run dir, two drivers.

:func:`run_generation` opens the run dir (:class:`~skillgen.rundir.rundir.RunDir`:
the lease, the fingerprint) and hands it to the driver ``config.mode``
picks: online mode on Ray actors (:mod:`skillgen.online.driver`) or the
provider's Batch API (:mod:`skillgen.batch.driver`). Neither driver can
reach the run dir any other way, so both keep the same contract. Both plan
with :mod:`skillgen.plan` and return the same :class:`~skillgen.summary.RunSummary`.
"""

from __future__ import annotations

from typing import Any

from skillgen.checks import check_run
from skillgen.common.errors import UserError
from skillgen.config import GenerationConfig
from skillgen.rundir.rundir import RunDir
from skillgen.summary import RunState, RunSummary

__all__ = ["RunSummary", "run_generation"]


def run_generation(config: GenerationConfig, progress: bool = True, on_update: Any = None) -> RunSummary:
    """Generate sentences for the selected skills into ``config.run_dir``; resumable, budget-aware.

    ``on_update(scheduler_state, budget_snapshot)`` is called on every driver tick of online mode (benchmarks, UIs).
    A second run on the same run dir, in either mode, is refused (UserError naming the holder of the lease).
    ``config.mode == "batch"`` sends the same requests through the Batch API (:mod:`skillgen.batch`); with
    ``batch_shortfall = "online"`` what a finished batch left missing is then generated online, under the same lease.
    """
    check_run(config)  # inputs, run dir, credentials, endpoint: before the run dir is created or its lease taken
    with RunDir.open(config) as run_dir:
        if config.mode == "batch":
            from skillgen.batch.driver import run_batch

            summary = run_batch(config, run_dir, progress=progress)
            if config.batch_shortfall != "online" or not summary.skills_remaining or summary.state != RunState.INCOMPLETE:
                return summary
        else:
            _refuse_open_batches(run_dir)
        from skillgen.online.driver import run_online

        return run_online(config, run_dir, progress=progress, on_update=on_update)


def _refuse_open_batches(run_dir: RunDir) -> None:
    """Online mode on a run dir whose batches still run at the provider would pay twice for their skills."""
    from skillgen.batch.state import load_manifest

    manifest = load_manifest(run_dir)
    if manifest is not None and manifest.open_entries():
        raise UserError(f"{run_dir} has {len(manifest.open_entries())} batches still open at the provider; "
                        "rerun with --mode batch to collect them (or `skillgen batch cancel`), then continue online")
