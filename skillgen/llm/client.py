"""One chat-completion call against any OpenAI-compatible endpoint, and its errors.

Why this module exists: retries must happen in exactly one place (the SDK's
own retries are off, ``max_retries=0``) so that every attempt passes through
the global budget, and every error must be classified the same way:

- retryable: 429 (rate limit), 408, 409, 5xx, timeouts, connection errors;
  waits are exponential with full jitter, but never shorter than the
  server's ``retry-after-ms`` / ``Retry-After``;
- fatal (a failure record, no retry): 400 (incl. ``context_length_exceeded``),
  401, 403, 404, 422 and 429 ``insufficient_quota``. Some of them (401, 403,
  404, quota) also stop the run, since every later request would fail too.

Responses are read with ``with_raw_response`` so the rate-limit headers reach
the budget. Every request carries ``X-Request-Key`` (the idempotency key), and
the API key is read from the environment only when the client is built.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import urlparse

import openai
import tenacity

from skillgen.common.errors import UserError

__all__ = ["CallResult", "ChatClient", "KEYLESS_PLACEHOLDER", "RUN_STOPPING", "RequestError", "Secret",
           "backoff_wait", "call_with_retry", "chat_params", "classify", "is_openai_host", "make_retrying",
           "max_tokens_param", "parse_retry_after", "rate_headers", "redact", "resolve_api_key",
           "uses_max_completion_tokens"]

RUN_STOPPING = {"authentication", "permission", "not_found", "insufficient_quota"}
KEYLESS_PLACEHOLDER = "no-key-needed"


class Secret:
    """A value that never shows itself: ``repr``/``str`` are masked, pickling keeps it (for Ray task args)."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None):
        self._value = value

    def get(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(None)"

    __str__ = __repr__

    def __reduce__(self):
        return (Secret, (self._value,))


@dataclass
class CallResult:
    content: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


class RequestError(Exception):
    """A classified failure of one HTTP attempt."""

    def __init__(self, error_class: str, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None, headers: dict[str, str] | None = None):
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.headers = headers or {}

    @property
    def stops_run(self) -> bool:
        return self.error_class in RUN_STOPPING


def rate_headers(headers: Any) -> dict[str, str]:
    out = {}
    for k, v in headers.items():
        kl = k.lower()
        if kl.startswith("x-ratelimit-") or kl in ("retry-after", "retry-after-ms"):
            out[kl] = v
    return out


def parse_retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra:
        try:
            return max(0.0, float(ra))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(ra)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


def _body_code(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("code") or err.get("type") or "")
    return ""


# Error bodies are copied into failure records, logs and run.json; a proxy or a self-hosted
# server may echo the credential it was sent, so anything key-shaped is masked first.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',}]+"),
    re.compile(r"(?i)((?:api[_-]?key|authorization|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"\b(sk-)[A-Za-z0-9_\-]{6,}"),
)


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


def _short(text: str, limit: int = 300) -> str:
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify(exc: BaseException) -> RequestError:
    """Map an SDK exception to retryable / fatal with a short, secret-free message."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return RequestError("timeout", "request timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return RequestError("connection", _short(f"connection error: {exc.__cause__ or exc}"), retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        headers = rate_headers(exc.response.headers)
        retry_after = parse_retry_after(exc.response.headers)
        code = _body_code(exc)
        msg = _short(f"HTTP {status} {code}: {getattr(exc, 'message', '')}".replace("  ", " "))
        if status == 429:
            if code == "insufficient_quota":
                return RequestError("insufficient_quota", msg, retryable=False, status=status, headers=headers)
            return RequestError("rate_limit", msg, retryable=True, status=status, retry_after=retry_after, headers=headers)
        if status in (408, 409) or status >= 500:
            return RequestError(f"http_{status}", msg, retryable=True, status=status, retry_after=retry_after, headers=headers)
        cls = {400: "bad_request", 401: "authentication", 403: "permission", 404: "not_found", 422: "unprocessable"}.get(status, f"http_{status}")
        if status == 400 and code == "context_length_exceeded":
            cls = "context_length_exceeded"
        return RequestError(cls, msg, retryable=False, status=status, headers=headers)
    if isinstance(exc, openai.APIResponseValidationError):
        return RequestError("bad_response", _short(str(exc)), retryable=True)
    return RequestError(type(exc).__name__, _short(str(exc)), retryable=False)


def backoff_wait(base: float, cap: float) -> Callable[[tenacity.RetryCallState], float]:
    """Full-jitter exponential backoff, floored at the server's Retry-After."""

    def wait(state: tenacity.RetryCallState) -> float:
        exp = min(cap, base * (2 ** (state.attempt_number - 1)))
        delay = random.uniform(0, exp)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RequestError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, cap * 4))
        return delay

    return wait


def make_retrying(max_attempts: int, base: float = 0.5, cap: float = 30.0,
                  on_retry: Callable[[RequestError], None] | None = None) -> tenacity.AsyncRetrying:
    """``on_retry`` runs only when another attempt follows (tenacity's ``before_sleep``): the last,
    exhausted attempt is a failure, not a retry."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(exc, RequestError):
            on_retry(exc)

    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max_attempts),
        wait=backoff_wait(base, cap),
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, RequestError) and e.retryable),
        before_sleep=before_sleep,
        reraise=True,
    )


def is_openai_host(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    return host.endswith("openai.com")


def resolve_api_key(api_key_env: str, base_url: str, fallback: "Secret | None" = None) -> str:
    """The key from ``$api_key_env`` (or the driver's, passed masked); endpoints other than OpenAI may need none."""
    import os

    raw = os.environ.get(api_key_env)
    key = raw or (fallback.get() if fallback is not None else None)
    if key:
        return key
    if is_openai_host(base_url):
        state = "is empty" if raw == "" else "is not set"
        raise UserError(f"environment variable {api_key_env} {state} (it must hold the API key for {base_url})")
    return KEYLESS_PLACEHOLDER


def uses_max_completion_tokens(model: str) -> bool:
    name = model.split("/")[-1].lower()
    return name.startswith(("gpt-5", "o1", "o3", "o4"))


def max_tokens_param(model: str) -> str:
    return "max_completion_tokens" if uses_max_completion_tokens(model) else "max_tokens"


def chat_params(model: str, temperature: float | None, top_p: float | None, seed: int | None,
                response_format: dict[str, Any] | None) -> dict[str, Any]:
    """Sampling and format parameters of a chat request (online and Batch JSONL lines alike)."""
    params: dict[str, Any] = {}
    reasoning = uses_max_completion_tokens(model)
    if temperature is not None and not reasoning:
        params["temperature"] = temperature
    if top_p is not None and not reasoning:
        params["top_p"] = top_p
    if seed is not None:
        params["seed"] = seed
    if response_format is not None:
        params["response_format"] = response_format
    return params


SEED_RANGE = 2**31  # llama.cpp takes a 32-bit seed; OpenAI and vLLM any integer


def request_seed(run_seed: int | None, request_key: str, missing: Sequence[int], repeat: int = 0) -> int | None:
    """The ``seed`` one request carries: a hash of the run seed, the skill's request key, the sample slots it
    asks for and ``repeat`` (the answers the key got before this request, in this invocation or an earlier one,
    online or batch: the ledger's 200s). None when the run has no seed.

    Why per request, not the run seed itself: the same seed on every request makes a deterministic server
    sample the same way for every skill. Why from these inputs only: a request's seed must not depend on
    when, by which worker or after which resume it is sent, so the same config gives the same request
    bodies. ``repeat`` keeps a retry after an unusable answer from being the identical request again (a
    deterministic server would give the same unusable answer). A provider's ``seed`` is best-effort
    (OpenAI: "determinism is not guaranteed"); the built-in simulator and llama.cpp honour it exactly.
    """
    if run_seed is None:
        return None
    blob = f"{run_seed}|{request_key}|{','.join(map(str, missing))}|{repeat}"
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big") % SEED_RANGE


class ChatClient:
    """``openai.AsyncOpenAI`` with SDK retries off; one attempt per :meth:`complete` call."""

    def __init__(self, base_url: str, model: str, api_key_env: str, *, timeout_s: float = 120.0,
                 connect_timeout_s: float = 10.0, temperature: float | None = None, top_p: float | None = None,
                 seed: int | None = None, response_format: dict[str, Any] | None = None, max_connections: int = 1000,
                 key_fallback: Secret | None = None):
        import httpx2

        self.model = model
        self.params = chat_params(model, temperature, top_p, seed, response_format)
        self.max_tokens_param = max_tokens_param(model)
        http = httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=httpx2.Timeout(timeout_s, connect=connect_timeout_s),
        )
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=resolve_api_key(api_key_env, base_url, key_fallback),
            max_retries=0,
            timeout=httpx2.Timeout(timeout_s, connect=connect_timeout_s),
            http_client=http,
        )

    async def complete(self, messages: list[dict[str, str]], max_tokens: int, request_key: str,
                       seed: int | None = None) -> CallResult:
        """One attempt; ``seed`` (:func:`request_seed`) replaces the client's own for this request."""
        params = self.params if seed is None else {**self.params, "seed": seed}
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                extra_headers={"X-Request-Key": request_key},
                **{self.max_tokens_param: max_tokens},
                **params,
            )
            completion = raw.parse()
        except openai.OpenAIError as exc:
            raise classify(exc) from None
        headers = rate_headers(raw.headers)
        choice = completion.choices[0] if completion.choices else None
        usage = completion.usage
        return CallResult(
            content=choice.message.content if choice else None,
            finish_reason=choice.finish_reason if choice else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            headers=headers,
        )

    async def close(self) -> None:
        await self._client.close()


async def call_with_retry(
    attempt: Callable[[], Awaitable[CallResult]], max_attempts: int, base: float, cap: float,
    on_retry: Callable[[RequestError], None] | None = None,
) -> CallResult:
    """Run ``attempt`` under the one retry loop; raises the last :class:`RequestError`."""
    async for state in make_retrying(max_attempts, base, cap, on_retry):
        with state:
            return await attempt()
    raise AssertionError("unreachable")
