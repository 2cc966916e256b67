"""The HTTP API (FastAPI): auth, limits, one-line errors, and the routes; the model sits behind a :class:`Backend`.

Order of checks for ``POST /v1/extract``, each answered with JSON ``{"detail": "<one line>"}``:

1. the bearer token, when the server has one (401, before the body is read);
2. the body's size against what the limits allow (413, without reading past it);
3. JSON (400), then the fields' types (422, naming the first bad field);
4. texts per request and characters per text (413), the top_k range and a finite min_score (422);
5. ``diverse`` (or a ``diversity`` strength) asked of a pooled model (422).

A request that passes goes to the model replicas in one call; a replica that died or a request
that outlived ``request_timeout_s`` comes back from the backend as :class:`Unavailable` (503).
Nothing here imports torch: the ingress replica stays a small process.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from typing import Any, Awaitable, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from skilltrain.serve.config import AppConfig
from skilltrain.serve.messages import ExtractAnswer, ExtractJob, ExtractOptions
from skilltrain.serve.schema import ErrorResponse, ExtractRequest, ExtractResponse, Health, ModelInfo

TITLE = "skilltrain: ESCO skill extraction"


class Problem(Exception):
    """A request this service refuses: an HTTP status and one line naming the field."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


class Unavailable(Problem):
    """No answer from the model replicas (died, overloaded, or too slow): 503, worth a retry."""

    def __init__(self, detail: str):
        super().__init__(503, detail, {"Retry-After": "1"})


class Backend(Protocol):
    """The model replicas as the API sees them; both raise :class:`Unavailable` when there is no answer."""

    def extract(self, job: ExtractJob) -> Awaitable[ExtractAnswer]: ...

    def info(self) -> Awaitable[dict[str, Any]]: ...


def create_api(config: AppConfig, backend: Backend, api_key: bytes | None) -> FastAPI:
    """The ASGI app of one ingress replica."""
    app = FastAPI(title=TITLE, version="1", description=_description(config),
                  responses={code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 503)})
    if api_key is not None:
        app.add_middleware(BearerAuth, key=api_key)
    app.add_exception_handler(Problem, _problem_response)
    app.add_exception_handler(Exception, _internal_error)
    model_info: dict[str, Any] = {}

    async def cached_info() -> dict[str, Any]:
        if not model_info:  # the same for every replica and for the app's life: asked once
            model_info.update(await backend.info())
        return model_info

    @app.post("/v1/extract", response_model=ExtractResponse, openapi_extra=_request_body(config),
              summary="ESCO skills of each sentence of each text")
    async def extract(request: Request) -> JSONResponse:
        started = time.perf_counter()
        job = parse_job(await read_body(request, config.max_body_bytes), config)
        asks_diverse = job.options.diverse or job.options.diversity is not None
        if asks_diverse and (await cached_info())["scoring"].get("scoring") != "token_attention":
            raise Problem(422, "diverse: needs a token-attention model (this one scores pooled)")
        answer = await backend.extract(job)
        ingress_ms = (time.perf_counter() - started) * 1e3
        return JSONResponse({"results": answer.results}, headers={"Server-Timing": _server_timing(ingress_ms, answer)})

    @app.get("/v1/model", response_model=ModelInfo, summary="the model being served and its saved test scores")
    async def model() -> dict[str, Any]:
        return await cached_info()

    @app.get("/healthz", response_model=Health, summary="ok once this ingress has reached a model replica (503 before)")
    async def healthz() -> dict[str, str]:
        await cached_info()
        return {"status": "ok"}

    return app


class BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <key>`` (compared in constant time)."""

    def __init__(self, app: Any, key: bytes):
        self.app, self.key = app, key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            response = JSONResponse({"detail": "authorization: missing or wrong bearer token (send 'Authorization: Bearer <key>')"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: dict) -> bool:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, token = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"body: {int(declared)} bytes, over the limit of {limit} bytes (--max-texts x --max-chars)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"body: over the limit of {limit} bytes (--max-texts x --max-chars)")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_job(body: bytes, config: AppConfig) -> ExtractJob:
    """JSON (400), the request schema (422), then the server's limits (413 / 422)."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise Problem(400, f"body: not valid JSON ({str(exc).splitlines()[0]})") from None
    try:
        request = ExtractRequest.model_validate(data)
    except ValidationError as exc:
        raise Problem(422, one_line(exc)) from None
    check_limits(request, config)
    if request.diversity is not None and request.diverse is False:
        raise Problem(422, "diversity: asks for the coverage-aware top-k, which diverse: false turns off")
    options = ExtractOptions(request.top_k, request.min_score, request.split, request.exhaustive, request.diverse, request.diversity)
    return ExtractJob(tuple(request.texts), options)


def check_limits(request: ExtractRequest, config: AppConfig) -> None:
    if len(request.texts) > config.max_texts:
        raise Problem(413, f"texts: {len(request.texts)} texts, over the limit of {config.max_texts} (--max-texts)")
    for n, text in enumerate(request.texts):
        if len(text) > config.max_chars:
            raise Problem(413, f"texts[{n}]: {len(text)} characters, over the limit of {config.max_chars} (--max-chars)")
    if not 1 <= request.top_k <= config.max_top_k:
        raise Problem(422, f"top_k: {request.top_k} is out of range, must be 1..{config.max_top_k} (--max-top-k)")
    if request.min_score is not None and not math.isfinite(request.min_score):
        raise Problem(422, f"min_score: must be a finite number (got {request.min_score})")


def one_line(exc: ValidationError) -> str:
    """The first schema error as ``field: message``, e.g. ``texts[2]: Input should be a valid string``."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {first['msg']}{more}"


def _server_timing(ingress_ms: float, answer: ExtractAnswer) -> str:
    """Where the time went, as a standard ``Server-Timing`` header (ms); the client's total minus ``ingress`` is the proxy."""
    t = answer.timing
    parts = {"ingress": ingress_ms, "replica": t.replica_s * 1e3, "queue": t.queue_s * 1e3, "model": t.model_s * 1e3}
    return ", ".join(f"{name};dur={value:.2f}" for name, value in parts.items())


def _problem_response(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    # the traceback goes to the replica's log (Starlette re-raises after this), never to the caller
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)


def _request_body(config: AppConfig) -> dict[str, Any]:
    """The request schema with this server's limits in it (the checks themselves are in :func:`check_limits`)."""
    schema = ExtractRequest.model_json_schema()
    props = schema["properties"]
    props["texts"].update(maxItems=config.max_texts)
    props["texts"]["items"].update(maxLength=config.max_chars)
    props["top_k"].update(minimum=1, maximum=config.max_top_k)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _description(config: AppConfig) -> str:
    auth = f"Every request needs `Authorization: Bearer <key>` (the key is in ${config.api_key_env} on the server). " \
        if config.api_key_env else ""
    return (f"Ranked ESCO skills for each sentence of job-ad texts. {auth}Limits: {config.max_texts} texts per request "
            f"(413), {config.max_chars} characters per text (413), top_k 1..{config.max_top_k} (422); errors are "
            f"`{{\"detail\": \"<one line>\"}}`. `Server-Timing` says where a request's time went.")
