"""OpenAI's Files and Batches APIs on the simulator, so batch mode is tested end to end.

Routes (OpenAI's request and response shapes, so the real ``openai`` SDK
works unchanged): ``POST /v1/files`` (multipart, ``purpose=batch``),
``GET /v1/files`` (list), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches`` (list), ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``.

A batch lives in one asyncio task and walks OpenAI's lifecycle:
``validating`` -> ``in_progress`` -> ``finalizing`` -> ``completed``, or

- ``failed``: the input file is malformed (a line that is not JSON, lacks
  ``custom_id``/``body``, repeats a ``custom_id``, names another endpoint or
  a second model) or the batch's tokens (prompt + ``max_tokens``) on top of
  the model's other open batches exceed ``batch_enqueued_token_limit``
  (``errors.data[].code == "token_limit_exceeded"``); nothing is billed;
- ``expired``: ``batch_expire_s`` after creation the lines processed so far
  come back in the output file (and are billed), the rest in the error file
  with ``code: "batch_expired"``;
- ``cancelling`` -> ``cancelled``: likewise, the rest are not processed.

Each line takes ``batch_seconds_per_line`` and draws at most one fault from
the server's seeded :class:`~skillgen.simulator.faults.FaultInjector`:
content faults (``malformed`` = invalid JSON in the body, ``wrong_count``,
``empty``) are billed 200 lines in the output file; every other fault is an
unbilled line in the error file with its HTTP status. Billing is per
``custom_id`` at the batch price (:mod:`.stats`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from skillgen.llm.tokens import count_tokens
from skillgen.simulator import wire
from skillgen.simulator.body import ChatRequest, validate_body
from skillgen.simulator.config import SimulatorConfig
from skillgen.simulator.faults import CONTENT_FAULTS, SERVER_STATUS, FaultInjector, FaultKind
from skillgen.simulator.stats import SimulatorStats

if TYPE_CHECKING:
    from skillgen.llm.pricing import Price

__all__ = ["BatchService", "ChatEndpoint"]

ENDPOINT = "/v1/chat/completions"
MAX_LINES = 50_000
OPEN = ("validating", "in_progress", "finalizing", "cancelling")
LINE_FAULT_STATUS = {FaultKind.RATE_LIMIT: 429, FaultKind.HANG: 504, FaultKind.DROP: 500,
                     FaultKind.INVALID_KEY: 401, FaultKind.INSUFFICIENT_QUOTA: 429, FaultKind.CONTEXT_LENGTH: 400,
                     **SERVER_STATUS}


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def document(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "status_details": None}


@dataclass
class Batch:
    """One batch's state; :meth:`document` is the OpenAI ``batch`` object."""

    id: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: int
    expires_at: int
    status: str = "validating"
    model: str = ""
    tokens: int = 0  # enqueued: prompt + max_tokens over all lines
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    times: dict[str, int] = field(default_factory=dict)
    cancel: bool = False

    def set(self, status: str) -> None:
        self.status = status
        stamp = {"in_progress": "in_progress_at", "finalizing": "finalizing_at", "completed": "completed_at",
                 "failed": "failed_at", "expired": "expired_at", "cancelling": "cancelling_at", "cancelled": "cancelled_at"}
        if status in stamp:
            self.times[stamp[status]] = int(time.time())

    def document(self) -> dict[str, Any]:
        doc = {
            "id": self.id, "object": "batch", "endpoint": ENDPOINT, "input_file_id": self.input_file_id,
            "completion_window": self.completion_window, "status": self.status,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "expires_at": self.expires_at,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }
        for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
                     "cancelled_at"):
            doc[name] = self.times.get(name)
        return doc


def _lookup(table: dict[str, Any], what: str, request: web.Request) -> Any:
    """The file or batch the URL names, or OpenAI's 404."""
    ident = request.match_info["id"]
    if ident not in table:
        raise wire.ApiError(404, f"No such {what}: '{ident}'", "invalid_request_error", None, "id", reason="not_found")
    return table[ident]


def _line_error(custom_id: str, status: int | None, message: str, code: str) -> dict[str, Any]:
    """An error-file line: a per-request HTTP error (``status``) or a batch-level one (``status`` None)."""
    out: dict[str, Any] = {"id": "batch_req_" + secrets.token_hex(12), "custom_id": custom_id}
    if status is None:
        out.update(response=None, error={"code": code, "message": message})
    else:
        out.update(response={"status_code": status, "request_id": "req_" + secrets.token_hex(8),
                             "body": {"error": {"message": message, "type": code, "param": None, "code": code}}},
                   error=None)
    return out


class ChatEndpoint(Protocol):
    """What batches need of the simulator's chat endpoint (its :class:`~skillgen.simulator.server.SimulatorServer`,
    which owns the batch service: the service reaches back only through this, so neither module imports the other)."""

    config: SimulatorConfig
    stats: SimulatorStats
    faults: FaultInjector

    def authenticate(self, request: web.Request) -> str: ...

    def make_completion(self, req: ChatRequest, fault: FaultKind | None,
                        prompt_tokens: int) -> tuple[dict[str, Any], int]: ...


class BatchService:
    """Files and batches of one simulator; every handler runs on the server's event loop."""

    def __init__(self, server: ChatEndpoint) -> None:
        self.server = server
        self.config = server.config
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}
        self._tasks: set[asyncio.Task] = set()

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/files", self.upload)
        r.add_get("/v1/files", self.list_files)
        r.add_get("/v1/files/{id}", self.get_file)
        r.add_get("/v1/files/{id}/content", self.file_content)
        r.add_post("/v1/batches", self.create)
        r.add_get("/v1/batches", self.list_batches)
        r.add_get("/v1/batches/{id}", self.retrieve)
        r.add_post("/v1/batches/{id}/cancel", self.cancel_batch)

    # ---- files -------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        return await self._guard(request, self._upload)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose not in ("batch", "fine-tune", "assistants", "user_data"):
            raise wire.bad_request("'purpose' must be one of batch, fine-tune, assistants, user_data", "purpose")
        if upload is None or not hasattr(upload, "file"):
            raise wire.bad_request("'file' is a required multipart field", "file")
        stored = self._store(upload.filename or "upload.jsonl", str(purpose), upload.file.read())
        if purpose == "batch":
            self.server.stats.files_uploaded[stored.filename] += 1
        return web.json_response(stored.document())

    def _store(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        stored = StoredFile("file-" + secrets.token_hex(12), filename, purpose, data)
        self.files[stored.id] = stored
        return stored

    async def list_files(self, request: web.Request) -> web.Response:
        async def handle(req: web.Request) -> web.Response:
            purpose = req.query.get("purpose")
            data = [f.document() for f in self.files.values() if purpose in (None, f.purpose)]
            return web.json_response({"object": "list", "data": data[::-1], "has_more": False})
        return await self._guard(request, handle)

    async def get_file(self, request: web.Request) -> web.Response:
        return await self._guard(request, lambda req: self._file(req).document())

    async def file_content(self, request: web.Request) -> web.Response:
        async def handle(req: web.Request) -> web.Response:
            return web.Response(body=self._file(req).data, content_type="application/octet-stream")
        return await self._guard(request, handle)

    def _file(self, request: web.Request) -> StoredFile:
        return _lookup(self.files, "file", request)

    # ---- batches -----------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        async def handle(req: web.Request) -> dict[str, Any]:
            body = await req.json()
            if not isinstance(body, dict):
                raise wire.bad_request("The request body must be a JSON object.")
            file_id = body.get("input_file_id")
            if file_id not in self.files or self.files[file_id].purpose != "batch":
                raise wire.bad_request(f"Invalid 'input_file_id': '{file_id}' is not a file with purpose batch.", "input_file_id")
            if body.get("endpoint") != ENDPOINT:
                raise wire.bad_request(f"Invalid 'endpoint': this simulator supports {ENDPOINT} only.", "endpoint")
            if body.get("completion_window") != "24h":
                raise wire.bad_request("Invalid 'completion_window': must be '24h'.", "completion_window")
            now = int(time.time())
            batch = Batch("batch_" + secrets.token_hex(12), file_id, "24h", body.get("metadata"), now,
                          now + int(self.config.batch_expire_s))
            self.batches[batch.id] = batch
            self.server.stats.batches_created += 1
            task = asyncio.create_task(self._run(batch, time.monotonic() + self.config.batch_expire_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return batch.document()
        return await self._guard(request, handle)

    async def list_batches(self, request: web.Request) -> web.Response:
        async def handle(req: web.Request) -> dict[str, Any]:
            data = [b.document() for b in self.batches.values()][::-1]
            return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None, "has_more": False}
        return await self._guard(request, handle)

    async def retrieve(self, request: web.Request) -> web.Response:
        return await self._guard(request, lambda req: self._batch(req).document())

    async def cancel_batch(self, request: web.Request) -> web.Response:
        def handle(req: web.Request) -> dict[str, Any]:
            batch = self._batch(req)
            if batch.status in ("validating", "in_progress", "finalizing"):
                batch.cancel = True
                batch.set("cancelling")
            elif batch.status != "cancelling":
                raise wire.ApiError(409, f"Cannot cancel a batch with status '{batch.status}'.", "invalid_request_error",
                                    reason="bad_request")
            return batch.document()
        return await self._guard(request, handle)

    def _batch(self, request: web.Request) -> Batch:
        return _lookup(self.batches, "batch", request)

    async def _guard(self, request: web.Request, handler: Any) -> web.Response:
        """Authenticate, run ``handler``, and turn :class:`wire.ApiError` into OpenAI's error body."""
        try:
            self.server.authenticate(request)
            result = handler(request)
            if asyncio.iscoroutine(result):
                result = await result
        except wire.ApiError as err:
            return web.json_response(err.body(), status=err.status)
        except (ValueError, UnicodeDecodeError):
            return web.json_response(wire.bad_request("We could not parse the JSON body of your request.").body(),
                                     status=400)
        return result if isinstance(result, web.StreamResponse) else web.json_response(result)

    # ---- the lifecycle -------------------------------------------------------------

    async def _run(self, batch: Batch, deadline: float) -> None:
        await asyncio.sleep(self.config.batch_validating_s)
        if batch.cancel:
            return self._finish(batch, "cancelled", [], [])
        lines, errors = self._parse(self.files[batch.input_file_id].data)
        if not errors:
            errors = self._check_queue(batch, lines)
        if errors:
            batch.errors = errors
            return batch.set("failed")
        batch.total = len(lines)
        batch.set("in_progress")
        out: list[dict[str, Any]] = []
        err: list[dict[str, Any]] = []
        done = 0  # lines processed
        while done < len(lines) and not batch.cancel and time.monotonic() < deadline:
            if self.config.batch_seconds_per_line > 0:
                await asyncio.sleep(self.config.batch_seconds_per_line)
            self._process(batch, *lines[done], out, err)
            done += 1
        if batch.cancel:
            await asyncio.sleep(self.config.batch_finalizing_s)  # "cancelling" lasts a moment, as at OpenAI
            return self._finish(batch, "cancelled", out, err)
        if done < len(lines):
            message = "This request could not be executed before the completion window expired."
            err += [_line_error(cid, None, message, "batch_expired") for cid, _ in lines[done:]]
            batch.failed += len(lines) - done
            return self._finish(batch, "expired", out, err)
        batch.set("finalizing")
        await asyncio.sleep(self.config.batch_finalizing_s)
        self._finish(batch, "completed", out, err)

    def _parse(self, data: bytes) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
        lines: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        models: set[str] = set()
        for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if not raw.strip():
                continue
            problem = None
            try:
                item = json.loads(raw)
            except ValueError:
                item, problem = None, ("invalid_json_line", "This line is not parseable as valid JSON.")
            if problem is None and not (isinstance(item, dict) and isinstance(item.get("custom_id"), str)
                                        and isinstance(item.get("body"), dict)):
                problem = ("missing_required_parameter", "Each line needs a string 'custom_id' and an object 'body'.")
            elif problem is None and (item.get("method") != "POST" or item.get("url") != ENDPOINT):
                problem = ("invalid_url", f"Each line needs method POST and url {ENDPOINT}.")
            elif problem is None and item["custom_id"] in seen:
                problem = ("duplicate_custom_id", f"The custom_id '{item['custom_id']}' is used more than once.")
            if problem is not None:
                return [], [{"code": problem[0], "message": problem[1], "param": None, "line": number}]
            seen.add(item["custom_id"])
            models.add(str(item["body"].get("model")))
            lines.append((item["custom_id"], item["body"]))
        if not lines:
            return [], [{"code": "empty_file", "message": "The input file has no requests.", "param": None, "line": None}]
        if len(lines) > MAX_LINES:
            return [], [{"code": "too_many_requests", "message": f"At most {MAX_LINES} requests per batch.",
                         "param": None, "line": None}]
        if len(models) > 1:
            return [], [{"code": "mixed_models", "message": "All requests in a batch must use the same model.",
                         "param": "model", "line": None}]
        return lines, []

    def _check_queue(self, batch: Batch, lines: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        batch.model = str(lines[0][1].get("model"))
        assumed = self.config.assumed_max_tokens
        batch.tokens = sum(count_tokens(batch.model, b.get("messages") or [])
                           + int(b.get("max_completion_tokens") or b.get("max_tokens") or assumed) for _, b in lines)
        limit = self.config.batch_enqueued_token_limit
        if not limit:
            return []
        queued = sum(b.tokens for b in self.batches.values()
                     if b is not batch and b.model == batch.model and b.status in OPEN)
        if queued + batch.tokens <= limit:
            return []
        batch.tokens = 0  # a failed batch holds nothing in the queue
        message = (f"Enqueued token limit reached for {batch.model} in organization org-simulator. Limit: {limit} "
                   f"enqueued tokens. Please try submitting fewer tasks or wait until your other batches complete.")
        return [{"code": "token_limit_exceeded", "message": message, "param": None, "line": None}]

    def _process(self, batch: Batch, custom_id: str, body: dict[str, Any], out: list, err: list) -> None:
        try:
            req = validate_body(body)
        except wire.ApiError as exc:
            batch.failed += 1
            self.server.stats.batch_line_errors[exc.reason] += 1
            err.append(_line_error(custom_id, exc.status, exc.message, exc.type))
            return
        fault = self.server.faults.draw()
        if fault is not None and fault not in CONTENT_FAULTS:
            status = LINE_FAULT_STATUS.get(fault, 500)
            batch.failed += 1
            self.server.stats.batch_line_errors[fault.value] += 1
            err.append(_line_error(custom_id, status, f"simulated {fault.value} fault", "server_error"))
            return
        prompt_tokens = count_tokens(req.model, req.messages)
        payload, completion_tokens = self.server.make_completion(req, fault, prompt_tokens)
        self.server.stats.bill_batch_line(custom_id, prompt_tokens, completion_tokens,
                                          _batch_cost(req.model, prompt_tokens, completion_tokens))
        batch.completed += 1
        out.append({"id": "batch_req_" + secrets.token_hex(12), "custom_id": custom_id,
                    "response": {"status_code": 200, "request_id": "req_" + secrets.token_hex(8), "body": payload},
                    "error": None})

    def _finish(self, batch: Batch, status: str, out: list, err: list) -> None:
        """Write the output and error files (each only if it has lines), then the final status."""
        def dump(rows: list, kind: str) -> str | None:
            if not rows:
                return None
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
            return self._store(f"{batch.id}_{kind}.jsonl", "batch_output", data).id

        batch.output_file_id = dump(out, "output")
        batch.error_file_id = dump(err, "error")
        batch.tokens = 0
        batch.set(status)


@functools.lru_cache(maxsize=64)
def _batch_price(model: str) -> "Price | None":
    from skillgen.llm.pricing import Price, batch_price, builtin_prices, lookup

    found = lookup(model, builtin_prices())
    return None if found is None else batch_price(Price(found[1]["input"], found[1]["output"]), model)


def _batch_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """What OpenAI would bill: the shipped table's batch price (0 for a model it does not list)."""
    price = _batch_price(model)
    return 0.0 if price is None else price.cost(prompt_tokens, completion_tokens)
