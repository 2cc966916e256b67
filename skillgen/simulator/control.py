"""Talking to a running simulator from outside its event loop (stats, readiness).

Plain ``urllib`` with proxies disabled: helpers must work in a bare test
process, and a corporate ``http_proxy`` must never swallow loopback calls.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable

__all__ = ["fetch_stats", "request_json", "reset_stats", "wait_until_ready"]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request_json(url: str, method: str = "GET", api_key: str | None = None, timeout: float = 10.0) -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with _OPENER.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def fetch_stats(base_url: str, timeout: float = 10.0) -> dict[str, Any]:
    """``GET {base_url}/stats``; ``base_url`` ends in ``/v1`` like the OpenAI client's."""
    return request_json(f"{base_url.rstrip('/')}/stats", timeout=timeout)


def reset_stats(base_url: str, timeout: float = 10.0) -> None:
    request_json(f"{base_url.rstrip('/')}/stats/reset", method="POST", timeout=timeout)


def wait_until_ready(base_url: str, api_key: str, deadline: float, alive: Callable[[], bool]) -> None:
    """Poll until ``GET /v1/models`` answers 200 and the tokenizers are loaded (``"warm"`` in the stats).

    Waiting for warm means the first completion is as fast as any other, so a
    test's short client timeout is never spent on loading BPE files.
    """
    base = base_url.rstrip("/")
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("simulator exited before it was ready")
        try:
            request_json(f"{base}/models", api_key=api_key, timeout=2.0)
            if request_json(f"{base}/stats", timeout=2.0).get("warm", True):
                return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = exc
        time.sleep(0.05)
    raise TimeoutError(f"simulator at {base_url} did not become ready in time: {last_error or 'still loading'}")
