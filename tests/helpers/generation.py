"""Helpers shared by the generation tests: configs, ``skillgen run`` as a subprocess, and checks of a run dir.

``ray_local`` is a module-scoped fixture factory: each test module shares one
local Ray instance with 2 CPUs, as the brief asks for a 2-core box.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import synthetic_skill_rows, write_esco_csv
from helpers.ports import free_ports
from helpers.promscrape import METRICS_SYSTEM_CONFIG
from skillgen.config import GenerationConfig

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[2]
TEST_KEY_ENV = "SKILLGEN_TEST_KEY"  # the simulator accepts any key; the tests set this one


def run_cmd(base_url: str, csv: Path, run_dir: Path | str, *extra: str, mode: str = "online", model: str = "gpt-4o-mini",
            n: int = 5, key_env: str | None = TEST_KEY_ENV) -> list[str]:
    """``skillgen run`` as a subprocess command line against the simulator at ``base_url``; batch mode polls fast."""
    cmd = [sys.executable, "-m", "skillgen.cli", "run", "--mode", mode, "--esco", str(csv), "--base-url", base_url,
           "--model", model, "--run-dir", str(run_dir), "-n", str(n)]
    if key_env:
        cmd += ["--api-key-env", key_env]
    if mode == "batch":
        cmd += ["--batch-poll-min-s", "0.05", "--batch-poll-max-s", "0.3"]
    return cmd + list(extra)


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment with this checkout first on PYTHONPATH (a subprocess imports the code under test)."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def batch_entries(run_dir: Path) -> list:
    """The batch manifest's entries of a run dir ([] before the driver wrote one)."""
    from skillgen.batch.state import load_manifest
    from skillgen.rundir.rundir import RunDir

    try:
        manifest = load_manifest(RunDir.read_only(run_dir))
    except Exception:  # noqa: BLE001 - not created yet
        return []
    return manifest.entries if manifest else []


def start_ray() -> None:
    import ray

    if not ray.is_initialized():
        # a known Prometheus port and a 1 s push to it, for the metrics test (helpers/promscrape.py)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _metrics_export_port=free_ports(1)[0], _system_config=METRICS_SYSTEM_CONFIG)


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def esco(tmp_path: Path, n: int) -> Path:
    return write_esco_csv(tmp_path / f"skills_{n}.csv", synthetic_skill_rows(n))


def gen_config(base_url: str, csv: Path, run_dir: Path, **kw: Any) -> GenerationConfig:
    values: dict[str, Any] = dict(
        base_url=base_url, model="simulator", esco=str(csv), run_dir=str(run_dir), n_sentences=5, workers=2,
        worker_num_cpus=0.5, flush_seconds=0.5, request_timeout_s=10.0, max_tokens=600, api_key_env="SKILLGEN_TEST_KEY",
        backoff_base_s=0.05, backoff_max_s=1.0, progress_interval_s=2.0,
    )
    values.update(kw)
    return GenerationConfig(**values)


def served_keys(stats: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in (stats.get("served_by_key") or {}).items() if v}


def assert_complete(run_dir: Path, n_skills: int, n: int) -> Any:
    from skillgen.rundir.sinks import read_rows

    raw = read_rows(run_dir, dedupe=False)
    assert raw.height == n_skills * n, f"expected {n_skills * n} rows, got {raw.height}"
    assert raw.select(["skill_id", "sample_idx"]).is_duplicated().sum() == 0
    assert sorted(raw["sample_idx"].unique().to_list()) == list(range(n))
    return raw


def assert_billed_once(stats: dict[str, Any]) -> None:
    """Batch mode: the simulator billed each custom_id once and received each input file once."""
    billed = stats["batch_billed_by_custom_id"]
    assert billed and set(billed.values()) == {1}, "a custom_id was billed twice"
    assert set(stats["files_uploaded"].values()) == {1}, "an input file was uploaded twice"


class LeaseWatcher:
    """Reads a local run dir's lease every ``interval`` s while a run goes on: which holders (lease tokens) it saw,
    and whether the batch was still open when it did. Every acquisition draws a new token, so one token seen in
    the batch phase and again at an online tick means the run dir was never let go in between."""

    def __init__(self, run_dir: Path, interval: float = 0.01) -> None:
        self.run_dir, self.interval = run_dir, interval
        self.seen: list[tuple[str | None, bool]] = []  # (token or None, batch still uncollected)
        self.at_online_ticks: set[str | None] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def token(self) -> str | None:
        from skillgen.rundir.lease import LEASE_FILE, Lease

        try:
            return Lease.from_bytes((self.run_dir / LEASE_FILE).read_bytes()).token
        except (FileNotFoundError, ValueError):  # absent, or caught mid-replace
            return None

    def _batch_open(self) -> bool:
        from skillgen.batch.state import load_manifest
        from skillgen.rundir.rundir import RunDir

        try:
            manifest = load_manifest(RunDir.read_only(self.run_dir))
        except Exception:  # noqa: BLE001 - not written yet
            return False
        return bool(manifest and any(not e.collected for e in manifest.entries))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.seen.append((self.token(), self._batch_open()))

    def on_update(self, _state: Any, _budget: Any) -> None:
        """``run_generation``'s hook: called on online mode's ticks only."""
        self.at_online_ticks.add(self.token())

    def __enter__(self) -> "LeaseWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def holders(self) -> set[str]:
        return {t for t, _ in self.seen if t is not None}

    def held_during_batch(self) -> set[str]:
        return {t for t, open_ in self.seen if t is not None and open_}


def assert_accounted(run_dir: Path, n_skills: int, n: int) -> tuple[set[str], set[str]]:
    """Every skill asked for is either complete (n rows, no duplicates) or has a failure record; both sets."""
    from skillgen.rundir.sinks import read_failures, read_rows

    rows = read_rows(run_dir, dedupe=False)
    assert rows.select(["skill_id", "sample_idx"]).is_duplicated().sum() == 0
    per_skill = rows.group_by("skill_id").len()
    complete = set(per_skill.filter(per_skill["len"] == n)["skill_id"].to_list())
    failed = set(read_failures(run_dir)["skill_id"].to_list())
    assert not complete & failed and len(complete) + len(failed) == n_skills
    return complete, failed


@pytest.fixture(scope="module")
def ray_local():
    start_ray()
    yield
    stop_ray()
