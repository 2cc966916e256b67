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
    """Poll ``GET /v1/models`` until it answers 200; stop early if the server process died."""
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("simulator exited before it was ready")
        try:
            request_json(f"{base_url.rstrip('/')}/models", api_key=api_key, timeout=2.0)
            return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = exc
            time.sleep(0.05)
    raise TimeoutError(f"simulator at {base_url} did not answer /v1/models in time: {last_error}")
