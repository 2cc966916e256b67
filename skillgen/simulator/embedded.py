"""The simulator inside the calling process, on a background thread.

The main pipeline uses the simulator as its default endpoint (no API key, no
internet) and must start and stop it itself, with no subprocess to manage.
The server gets its own event loop on a daemon thread, so it never competes
with the caller's loop (or lack of one); stats are read on that loop, never
from the caller's thread, because the counters are not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from skillgen.simulator.config import SimulatorConfig
from skillgen.simulator.server import SimulatorServer, serve

__all__ = ["START_TIMEOUT_S", "SimulatorThread", "run_in_thread"]

log = logging.getLogger("skillgen.simulator")

START_TIMEOUT_S = 30.0


class SimulatorThread:
    """A running in-process simulator: ``base_url``, ``stats()``, ``reset_stats()``, ``stop()``; a context manager."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.base_url = ""
        self._server: SimulatorServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="skillgen-simulator", daemon=True)

    def start(self, timeout: float = START_TIMEOUT_S) -> "SimulatorThread":
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"simulator thread did not start within {timeout:g}s")
        if self._error is not None:
            self._thread.join(timeout)
            raise RuntimeError(f"simulator failed to start: {self._error}") from self._error
        deadline = time.monotonic() + timeout
        while not self._call(lambda server: server.warm):  # first completion as fast as any other
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulator did not load its tokenizers within {timeout:g}s")
            time.sleep(0.02)
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); nothing else would see it
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        def ready(base_url: str, server: SimulatorServer) -> None:
            self.base_url = base_url
            self._server = server
            self._ready.set()

        await serve(self.config, self._stop, ready)

    def _call(self, fn: Any, timeout: float = 10.0) -> Any:
        if self._loop is None or self._server is None or not self._thread.is_alive():
            raise RuntimeError("simulator is not running")

        async def on_loop() -> Any:
            return fn(self._server)

        return asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(timeout)

    def stats(self) -> dict[str, Any]:
        """The same document as ``GET /v1/stats``."""
        return self._call(lambda server: server.stats_document())

    def reset_stats(self) -> None:
        self._call(lambda server: server.stats.reset())

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (in-flight requests get ``shutdown_timeout`` to finish) and join the thread. Idempotent."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # loop already closed
                pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("simulator thread did not stop within %gs", timeout)

    def __enter__(self) -> "SimulatorThread":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(config: SimulatorConfig | None = None, **options: Any) -> SimulatorThread:
    """Start a simulator on a background thread and return once it accepts connections.

    ``options`` are :class:`SimulatorConfig` fields (applied over ``config``).
    """
    config = _merge(config, options)
    return SimulatorThread(config).start()


def _merge(config: SimulatorConfig | None, options: dict[str, Any]) -> SimulatorConfig:
    if config is None:
        return SimulatorConfig(**options)
    if not options:
        return config
    return SimulatorConfig(**{**config.model_dump(), **options})
