"""``skillgen batch cancel RUN_DIR``: stop paying for what is still queued.

If a batch run holds the run dir, first a marker in ``<run_dir>/batch/``
(:meth:`RunDir.request_cancel`), so that driver submits nothing new and
cancels any batch it starts after this point; otherwise cancel takes the
lease itself, so no run starts meanwhile. Then every
recorded batch that is not terminal is cancelled at the provider. Lines the
provider finished before the cancel are billed and come back in the output
file; the driver (or the next ``skillgen run``) collects them and a rerun
resubmits the rest. The endpoint and key variable come from the run dir's
``run.json`` (never a key itself).
"""

from __future__ import annotations

from pathlib import Path

from skillgen.batch.api import BatchApi
from skillgen.batch.state import load_manifest
from skillgen.common.errors import UserError
from skillgen.config import make_config
from skillgen.rundir.lease import RunDirInUse
from skillgen.rundir.rundir import RunDir

__all__ = ["CANCELLABLE", "cancel_run"]

CANCELLABLE = ("validating", "in_progress", "finalizing")


def cancel_run(run_dir: str | Path) -> list[tuple[str, str]]:
    """Cancel the run dir's open batches; returns ``(batch_id, status after the call)`` for each."""
    try:
        rd = RunDir.attach(run_dir, purpose="skillgen batch cancel")
    except RunDirInUse:
        rd = RunDir.read_only(run_dir)
        RunDir.request_cancel(run_dir)  # the running driver cancels and collects
    with rd:
        meta, manifest = rd.meta(), load_manifest(rd)
        if not meta or manifest is None:
            raise UserError(f"{run_dir}: no batch-mode run here (no run.json or batch/manifest.json)")
        api = BatchApi(make_config(meta["config"], source=f"{run_dir}/run.json"))
        out = []
        try:
            for entry in manifest.entries:
                if entry.batch_id and not entry.collected and entry.status in CANCELLABLE:
                    batch = api.retrieve(entry.batch_id)
                    if batch.status in CANCELLABLE:
                        batch = api.cancel(entry.batch_id)
                    out.append((entry.batch_id, batch.status))
        finally:
            api.close()
    return out
