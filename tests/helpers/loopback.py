"""A small aiohttp app on a free loopback port, served from its own event loop in a daemon thread.

Tests and benchmarks put real HTTP servers of their own between skillgen and a model: the recording
proxy in front of llama.cpp (:mod:`helpers.llamacpp`) and the server that replays what llama.cpp answered
(:mod:`helpers.replay`). Both need the same start/stop dance, so it lives here once.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from helpers.ports import free_port


class LoopbackApp:
    """Subclasses add routes in :meth:`routes` and may open/close resources in :meth:`on_start`/:meth:`on_stop`
    (both run on the app's own loop). Use as a context manager; ``base_url`` ends in ``/v1`` like the OpenAI SDK's."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._runner: Any = None

    def routes(self, app: Any) -> None:
        raise NotImplementedError

    async def on_start(self) -> None:
        pass

    async def on_stop(self) -> None:
        pass

    def __enter__(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        from aiohttp import web

        await self.on_start()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self.on_stop()
