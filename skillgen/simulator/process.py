"""The simulator as a child process, for tests and benchmarks.

A separate process gives the server its own interpreter (its own GIL), so a
load test measures the client, not a server sharing its CPU, and the real
``skillgen sim-server`` entry point is what runs. The class must never leak a
process, whatever happens to the caller:

- ``stop()`` sends SIGTERM (the server writes ``--stats-file`` and exits),
  then SIGKILL after a grace period; it is idempotent;
- the context manager and a ``weakref.finalize`` (which also runs at
  interpreter exit) call it, so a failing test or a forgotten ``stop()``
  still cleans up;
- the child gets ``--parent-pid`` and exits by itself when its parent dies,
  which covers a parent killed with SIGKILL (no Python cleanup runs then).

The port is chosen by the child (bind to port 0, no race) and reported via a
ready file; ``start()`` then waits until ``GET /v1/models`` answers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from skillgen.simulator import control
from skillgen.simulator.config import REQUIRE_KEY_ENV, SimulatorConfig

__all__ = ["DEFAULT_API_KEY", "SimulatorProcess"]

DEFAULT_API_KEY = "sk-simulator"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _terminate(proc: subprocess.Popen[bytes], workdir: str, grace: float) -> int | None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; remove the work directory."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class SimulatorProcess:
    """``skillgen sim-server`` in a subprocess on a free loopback port.

    >>> with SimulatorProcess(rpm=600, fault_rates="500=0.1") as sim:
    ...     client = openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)

    ``options`` are :class:`SimulatorConfig` fields, applied over ``config``.
    ``api_key`` is the key this helper uses for its readiness check; it is
    also what :attr:`api_key` suggests to clients (the configured
    ``require_key`` when there is one).
    """

    def __init__(self, config: SimulatorConfig | None = None, *, api_key: str = DEFAULT_API_KEY,
                 startup_timeout: float = 30.0, stop_grace: float = 10.0, **options: Any) -> None:
        base = config.model_dump() if config is not None else {}
        self.config = SimulatorConfig(**{**base, **options})
        self.api_key = self.config.require_key or api_key
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.base_url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: str | None = None
        self._finalizer: weakref.finalize | None = None
        self.returncode: int | None = None

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> str:
        """Launch the server and return its base URL (``http://127.0.0.1:PORT/v1``) once it answers."""
        if self._proc is not None:
            raise RuntimeError("SimulatorProcess already started")
        self._workdir = tempfile.mkdtemp(prefix="skillgen-sim-")
        ready_file = Path(self._workdir) / "ready.json"
        cmd = [sys.executable, "-m", "skillgen.simulator", *self.config.to_cli_args(),
               "--ready-file", str(ready_file), "--parent-pid", str(os.getpid())]
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=self._child_env(), close_fds=True)
        self._finalizer = weakref.finalize(self, _terminate, self._proc, self._workdir, self.stop_grace)
        try:
            deadline = time.monotonic() + self.startup_timeout
            self.base_url = self._wait_for_ready_file(ready_file, deadline)
            control.wait_until_ready(self.base_url, self.api_key, deadline, self.running_check)
        except BaseException as exc:
            log_tail = self.log_text()[-2000:]
            self.stop()
            if isinstance(exc, (RuntimeError, TimeoutError)):
                raise RuntimeError(f"{exc}; server output:\n{log_tail}") from exc
            raise
        return self.base_url

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.pop(REQUIRE_KEY_ENV, None)
        if self.config.require_key is not None:
            env[REQUIRE_KEY_ENV] = self.config.require_key  # not on the command line: ps shows those
        return env

    def _wait_for_ready_file(self, ready_file: Path, deadline: float) -> str:
        while time.monotonic() < deadline:
            if ready_file.exists():
                return str(json.loads(ready_file.read_text())["base_url"])
            if not self.running_check():
                raise RuntimeError(f"simulator exited with code {self._proc.returncode if self._proc else None} during startup")
            time.sleep(0.02)
        raise TimeoutError(f"simulator did not bind a port within {self.startup_timeout:g}s")

    def stop(self) -> int | None:
        """Terminate the server (SIGTERM, then SIGKILL); returns its exit code. Safe to call twice."""
        if self._finalizer is not None and self._finalizer.alive:
            self.returncode = self._finalizer()
        return self.returncode

    def __enter__(self) -> "SimulatorProcess":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- inspection ----------------------------------------------------------------

    def running_check(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("SimulatorProcess not started")
        return Path(self._workdir) / "server.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, RuntimeError):
            return ""

    def stats(self) -> dict[str, Any]:
        """``GET /v1/stats`` (see :mod:`skillgen.simulator.stats` for the fields)."""
        return control.fetch_stats(self._require_url())

    def reset_stats(self) -> None:
        control.reset_stats(self._require_url())

    def _require_url(self) -> str:
        if self.base_url is None or not self.running_check():
            raise RuntimeError("simulator is not running")
        return self.base_url
