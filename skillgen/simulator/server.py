"""The HTTP server: OpenAI's chat-completions API over aiohttp, with limits and faults.

One request walks a fixed pipeline, and the order is part of the contract
(it decides what is charged and what is billed):

1. parse and validate the body (400 ``bad_request``);
2. authenticate the bearer key (401 ``unauthorized``);
3. draw at most one fault (seeded; ``X-Sim-Fault: KIND`` forces one);
4. rejections that cost nothing: injected ``invalid_key``,
   ``insufficient_quota``, ``context_length``, spurious ``429``, then a
   genuine context-window overflow (400 ``context_length_exceeded``);
5. rate limits: charge prompt + n x max completion tokens, or 429;
6. latency (or the hang), an ``asyncio`` sleep, so thousands of requests
   can wait at once on one core;
7. injected ``500``/``502``/``503`` and ``drop``;
8. content (possibly degraded), truncated to ``max_tokens`` with
   ``finish_reason: "length"``, usage counted with tiktoken, then written:
   only a written 200 is *served* and billed (see :mod:`.stats`).

Handlers are cancelled when the client disconnects (``handler_cancellation``),
which is how a client-side timeout shows up as ``client_disconnected``
instead of a phantom billed response. The API key is never logged: only
:func:`~skillgen.simulator.wire.key_fingerprint`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from aiohttp import web

from skillgen.simulator import structured, wire
from skillgen.simulator.batches import BatchService
from skillgen.simulator.body import ChatRequest, validate_body
from skillgen.simulator.config import SimulatorConfig
from skillgen.simulator.content import generic_answer, writer_for
from skillgen.simulator.faults import (
    CONTENT_FAULTS,
    SERVER_STATUS,
    FaultInjector,
    FaultKind,
    corrupt_json,
    parse_fault_kind,
    wrong_count,
)
from skillgen.simulator.ratelimit import RateLimiter
from skillgen.simulator.stats import RequestOutcome, SimulatorStats
from skillgen.llm.tokens import count_tokens, encoding_for

__all__ = ["FORCE_FAULT_HEADER", "MAX_BODY_BYTES", "REQUEST_KEY_HEADER", "SimulatorServer", "serve", "url_host"]

log = logging.getLogger("skillgen.simulator")

FORCE_FAULT_HEADER = "X-Sim-Fault"
REQUEST_KEY_HEADER = "X-Request-Key"
MAX_BODY_BYTES = 32 * 1024 * 1024


class _ClientGone(Exception):
    """The connection closed while a 200 was being written."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("client disconnected")
        self.response = response


@dataclass
class _Call:
    """What the pipeline has learned about one request so far."""

    api_key: str = ""
    model: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


class SimulatorServer:
    """State of one simulated endpoint: limits, fault RNG, stats, and the aiohttp app."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.stats = SimulatorStats()
        self.limiter = RateLimiter(config.rpm, config.tpm)
        self.faults = FaultInjector(config.fault_rates, config.seed)
        self._latency_rng = random.Random(f"latency:{config.seed}")
        self._content_rng = random.Random(f"content:{config.seed}")
        self._created = int(time.time())
        self._warm: asyncio.Future[None] | None = None

    def warm_up(self) -> None:
        """Load the models' BPE files on a daemon thread: readiness need not wait for them, completions do.

        A daemon thread (not the loop's executor) so that stopping right after start does not wait for it.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def load() -> None:
            try:
                for model in self.config.models:
                    encoding_for(model)
            except Exception:  # a request will load (and report) it itself
                log.exception("could not preload tokenizers")
            finally:
                try:
                    loop.call_soon_threadsafe(finished)
                except RuntimeError:  # the server stopped meanwhile
                    pass

        threading.Thread(target=load, name="skillgen-sim-warmup", daemon=True).start()
        self._warm = done

    @property
    def warm(self) -> bool:
        """True once the tokenizers are loaded: from then on no request waits for them."""
        return self._warm is not None and self._warm.done()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/stats", self.get_stats)
        app.router.add_post("/v1/stats/reset", self.reset_stats)
        BatchService(self).register(app)  # /v1/files, /v1/batches
        return app

    # ---- endpoints -------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        try:
            self.authenticate(request)
        except wire.ApiError as err:
            return _error_response(err)
        return web.json_response(wire.model_list(self.config.models, self._created))

    def stats_document(self) -> dict[str, Any]:
        """What ``GET /v1/stats`` returns: the counters, the config, and whether tokenizers are loaded."""
        return {**self.stats.snapshot(self.config.summary()), "warm": self.warm}

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats_document())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response({"reset": True})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        outcome = self.stats.begin(request.headers.get(REQUEST_KEY_HEADER))
        call = _Call()
        disconnected = False
        try:
            return await self._complete(request, call, outcome)
        except wire.ApiError as err:
            if err.reason == "rate_limited":
                self.stats.rate_limited(outcome, err.type)
            outcome.fail(err.reason)
            self._log(call, err.status, err.reason)
            return _error_response(replace(err, headers={**call.headers, **err.headers}))
        except _ClientGone as gone:
            disconnected = True
            return gone.response
        except asyncio.CancelledError:
            disconnected = True
            raise
        finally:
            outcome.close(disconnected)

    # ---- the pipeline ------------------------------------------------------------

    async def _complete(self, request: web.Request, call: _Call, outcome: RequestOutcome) -> web.StreamResponse:
        if self._warm is not None and not self._warm.done():
            await asyncio.shield(self._warm)
        body = await _read_json(request)
        req = validate_body(body)
        call.model = req.model
        call.api_key = self.authenticate(request)
        fault = self._draw_fault(request)
        prompt_tokens = count_tokens(req.model, req.messages)
        self._reject_early(fault, req, call, prompt_tokens)
        completion_cap = req.max_completion or self.config.assumed_max_tokens
        admission = self.limiter.admit(call.api_key, prompt_tokens + req.n * completion_cap)
        call.headers = admission.headers
        if not admission.allowed:
            assert admission.limited_by is not None
            raise wire.rate_limited(req.model, admission.limited_by, admission.limit, admission.used,
                                    admission.requested, admission.retry_after, admission.headers)
        await self._wait(fault, outcome)
        if fault in SERVER_STATUS:
            raise replace(wire.server_error(SERVER_STATUS[fault]), reason=fault.value)
        if fault is FaultKind.DROP:
            outcome.fail(FaultKind.DROP.value)
            self._log(call, 0, "drop")
            _drop_connection(request)
            raise asyncio.CancelledError()
        return await self._respond(request, req, call, outcome, fault, prompt_tokens)

    def authenticate(self, request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise wire.missing_key()
        required = self.config.require_key
        if required is not None and not hmac.compare_digest(key.encode(), required.encode()):
            raise wire.invalid_key(key)
        return key

    def _draw_fault(self, request: web.Request) -> FaultKind | None:
        forced = request.headers.get(FORCE_FAULT_HEADER)
        if forced:
            try:
                return parse_fault_kind(forced)
            except ValueError as exc:
                raise wire.bad_request(str(exc), FORCE_FAULT_HEADER) from None
        return self.faults.draw()

    def _reject_early(self, fault: FaultKind | None, req: ChatRequest, call: _Call, prompt_tokens: int) -> None:
        """Failures decided before the rate limiter, so they charge nothing (as at OpenAI)."""
        call.headers = self.limiter.headers(call.api_key)
        window = self.config.context_window
        completion = req.max_completion or 0
        if fault is FaultKind.INVALID_KEY:
            raise replace(wire.invalid_key(call.api_key), reason=fault.value)
        if fault is FaultKind.INSUFFICIENT_QUOTA:
            raise wire.insufficient_quota()
        if fault is FaultKind.CONTEXT_LENGTH:
            raise replace(wire.context_length_exceeded(window, prompt_tokens + window, completion), reason=fault.value)
        if fault is FaultKind.RATE_LIMIT:
            raise wire.spurious_rate_limit(req.model, call.headers)
        if prompt_tokens + completion > window:
            raise wire.context_length_exceeded(window, prompt_tokens, completion)

    async def _wait(self, fault: FaultKind | None, outcome: RequestOutcome) -> None:
        """Service time; a hang is settled first so a client giving up on it is not 'disconnected'."""
        if fault is FaultKind.HANG:
            outcome.fail(FaultKind.HANG.value)
            await asyncio.sleep(self.config.hang_seconds)
            raise replace(wire.server_error(504), reason=FaultKind.HANG.value)
        delay = self.config.latency.sample(self._latency_rng)
        if delay > 0:
            await asyncio.sleep(delay)

    def make_completion(self, req: ChatRequest, fault: FaultKind | None, prompt_tokens: int) -> tuple[dict[str, Any], int]:
        """The ``chat.completion`` body for ``req`` and its completion tokens (shared with batch lines)."""
        encoding = encoding_for(req.model)
        choices: list[tuple[str, str]] = []
        completion_tokens = 0
        for index in range(req.n):
            content = self._content(req, fault, self._choice_rng(req, index))
            tokens = encoding.encode(content, disallowed_special=())
            finish = "stop"
            if req.max_completion is not None and len(tokens) > req.max_completion:
                tokens = tokens[: req.max_completion]
                content = encoding.decode(tokens)
                finish = "length"
            completion_tokens += len(tokens)
            choices.append((content, finish))
        return wire.chat_completion(req.model, choices, prompt_tokens, completion_tokens), completion_tokens

    async def _respond(self, request: web.Request, req: ChatRequest, call: _Call, outcome: RequestOutcome,
                       fault: FaultKind | None, prompt_tokens: int) -> web.StreamResponse:
        payload, completion_tokens = self.make_completion(req, fault, prompt_tokens)
        response = web.Response(
            body=json.dumps(payload, ensure_ascii=False).encode(),
            content_type="application/json",
            headers=self._headers(call),
        )
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:  # the client left while we wrote: not served, not billed
            raise _ClientGone(response) from None
        outcome.serve(prompt_tokens, completion_tokens, fault.value if fault in CONTENT_FAULTS else None)
        self._log(call, 200, fault.value if fault else "ok")
        return response

    def _content(self, req: ChatRequest, fault: FaultKind | None, rng: random.Random) -> str:
        if fault is FaultKind.EMPTY:
            return ""
        writer = writer_for(req.prompt_text)
        if writer is None:
            content = structured.render_answer(generic_answer(rng), req.response_format)
        else:
            n = writer.prompt.n
            count = wrong_count(n, rng) if fault is FaultKind.WRONG_COUNT else n
            content = structured.render_sentences(writer.sentences(rng, count), req.response_format)
        return corrupt_json(content, rng) if fault is FaultKind.MALFORMED else content

    def _choice_rng(self, req: ChatRequest, index: int) -> random.Random:
        """Reproducible for a given ``seed`` (per choice) or at temperature 0 (greedy: every choice alike)."""
        if req.seed is not None:
            return random.Random(f"{req.seed}:{index}:{req.prompt_text}")
        if req.temperature == 0:
            return random.Random(f"greedy:{req.prompt_text}")
        return random.Random(self._content_rng.getrandbits(64))

    def _headers(self, call: _Call) -> dict[str, str]:
        elapsed_ms = int((time.monotonic() - call.started) * 1000)
        return {**call.headers, "x-request-id": "req_" + secrets.token_hex(8), "openai-processing-ms": str(elapsed_ms)}

    def _log(self, call: _Call, status: int, what: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            who = wire.key_fingerprint(call.api_key) if call.api_key else "-"
            log.debug("chat.completions key=%s model=%s status=%s %s", who, call.model or "-", status, what)


async def _read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise wire.bad_request("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise wire.bad_request("The request body must be a JSON object.")
    return body


def _error_response(err: wire.ApiError) -> web.Response:
    headers = {**err.headers, "x-request-id": "req_" + secrets.token_hex(8)}
    return web.json_response(err.body(), status=err.status, headers=headers)


def _drop_connection(request: web.Request) -> None:
    """Close the socket without a byte of response, as a crashed proxy does."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def serve(config: SimulatorConfig, stop: asyncio.Event, on_ready: Callable[[str, SimulatorServer], None],
                server: SimulatorServer | None = None) -> SimulatorServer:
    """Run until ``stop`` is set; ``on_ready(base_url, server)`` once the port is bound. Writes ``stats_file`` last."""
    server = server or SimulatorServer(config)
    runner = web.AppRunner(
        server.build_app(), access_log=None, handler_cancellation=True, shutdown_timeout=config.shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=4096, reuse_address=True)
        await site.start()
        port = runner.addresses[0][1]
        base_url = f"http://{url_host(config.host)}:{port}/v1"
        log.info("LLM simulator listening on %s (rpm=%s tpm=%s latency=%s faults=%s)", base_url, config.rpm or "unlimited",
                 config.tpm or "unlimited", config.latency, config.summary()["fault_rates"] or "none")
        server.warm_up()
        on_ready(base_url, server)
        await stop.wait()
    finally:
        await runner.cleanup()
        if config.stats_file is not None:
            server.stats.write(config.stats_file, config.summary())
            log.info("stats written to %s", config.stats_file)
    return server
