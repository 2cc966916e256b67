"""Everything a generation run can check before its first side effect.

``skillgen run`` used to open the run dir (create it, take the lease, write ``run.json``) and only then
read the taxonomy, the credentials and the endpoint: a run refused for a missing key left a stub run dir
behind, whose fingerprint then refused the corrected rerun. :func:`check_run` reads and asks, and
writes nothing; :func:`skillgen.generation.run_generation` calls it before :meth:`RunDir.open`:

- the model has a price (the spend cap needs one);
- the taxonomy reads and the skill selection is not empty;
- ``--run-dir`` is a folder that can be created, and is new, empty or a run dir: never a folder of the
  user's files, never one another run holds (the lease), and never a run dir made with other
  output-shaping settings (the message names them);
- when requests remain to be sent: the API key is present and the endpoint answers one cheap request.
"""

from __future__ import annotations

from dataclasses import dataclass

from skillgen.common.outputs import check_output_dir, check_writable_path
from skillgen.common.storage import Location, resolve
from skillgen.common.taxonomy import Skill
from skillgen.config import GenerationConfig

__all__ = ["RUN_DIR_NAMES", "RunCheck", "check_run", "check_run_dir", "is_run_dir"]

RUN_DIR_NAMES = ("run.json", "shards", "failures", "ledger", "batch", "damaged")  # what a run dir holds


@dataclass(frozen=True)
class RunCheck:
    """What the checks found: the selected skills, and whether the run dir still lacks work (requests to send)."""

    skills: list[Skill]
    remaining: bool

    def check_endpoint(self, config: GenerationConfig) -> None:
        """The API key is present and the endpoint answers (one cheap request), if anything is left to send."""
        from skillgen.plan import preflight

        if self.remaining and config.preflight:
            preflight(config)


def check_run(config: GenerationConfig, endpoint: bool = True) -> RunCheck:
    """:class:`~skillgen.common.errors.UserError` for any of the above (``endpoint=False``: all but the
    credentials and the endpoint, which the caller checks later with :meth:`RunCheck.check_endpoint`)."""
    from skillgen.llm.pricing import config_batch_price, config_price

    from skillgen.plan import selected_skills

    (config_batch_price if config.mode == "batch" else config_price)(config)
    skills = selected_skills(config)
    checked = RunCheck(skills, check_run_dir(config, skills))
    if endpoint:
        checked.check_endpoint(config)
    return checked


def check_run_dir(config: GenerationConfig, skills: list[Skill]) -> bool:
    """The run dir's checks (see the module docstring); whether it still lacks work (always True for a new one)."""
    from skillgen.plan import build_tasks
    from skillgen.rundir.lease import RunDirLease
    from skillgen.rundir.rundir import RunDir, holds_no_work
    from skillgen.rundir.runstate import check_fingerprint, read_run_json

    root = resolve(config.run_dir, "run_dir")
    if root.is_local:
        check_writable_path(root.local_path, "--run-dir", "dir")
    RunDirLease.check_free(config.run_dir)  # one writer: a second run is refused naming the first
    meta = read_run_json(root)
    if meta is None:
        check_output_dir(root, "--run-dir", is_own=is_run_dir, own_kind="a skillgen run dir")
        return True
    if holds_no_work(root):
        return True  # a corrected rerun takes it over (RunDir.open)
    check_fingerprint(root, meta, config)
    run_dir = RunDir.read_only(root)
    tasks, _, _ = build_tasks(config, skills, run_dir.progress())
    return bool(tasks) or (config.mode == "batch" and _open_batches(run_dir))


def is_run_dir(location: Location) -> bool:
    """A folder holding only what a run dir holds (one whose run.json was never written: a run stopped at once)."""
    from skillgen.common.outputs import folder_entries

    return all(name.rstrip("/") in RUN_DIR_NAMES or name.startswith((".skillgen.lease", ".write-probe-"))
               for name in folder_entries(location))


def _open_batches(run_dir) -> bool:
    from skillgen.batch.state import load_manifest

    manifest = load_manifest(run_dir)
    return manifest is not None and bool(manifest.open_entries())
