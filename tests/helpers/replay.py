"""Serve what a real model answered, byte for byte, to skillgen's real client.

The fixtures under ``tests/fixtures/smollm2/`` are exchanges the recording proxy
(:class:`llamacpp.RecordingProxy`) kept while llama.cpp served SmolLM2-135M-Instruct for the main
job's skills (``benchmarks/bench_llamacpp.py``). :class:`ReplayServer` answers the n-th chat request
with the n-th recorded response (same status and JSON body, after the recorded delay when asked),
sends no rate-limit headers (llama.cpp sends none), and keeps the requests it was sent, so a test
sees both what the worker kept from a real answer and what it asked next.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from helpers.loopback import LoopbackApp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "smollm2"


def load_fixture(name: str) -> dict[str, Any]:
    """``{"source", "skill": {id, label, description, alt_labels}, "exchanges": [recorded, ...]}``."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


class ReplayServer(LoopbackApp):
    """OpenAI-compatible on loopback: ``POST /v1/chat/completions`` gets the recorded answers in order."""

    def __init__(self, exchanges: list[dict[str, Any]], *, delays: bool = False):
        super().__init__()
        self.exchanges = exchanges
        self.delays = delays
        self.requests: list[dict[str, Any]] = []

    def routes(self, app: Any) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": "smollm2", "object": "model"}]})

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        self.requests.append(await request.json())
        if len(self.requests) > len(self.exchanges):
            return web.json_response({"error": {"message": "no more recorded answers"}}, status=400)
        recorded = self.exchanges[len(self.requests) - 1]
        if self.delays:
            await asyncio.sleep(recorded["elapsed_s"])
        return web.json_response(recorded["response"], status=recorded["status"])
