"""The provider's Files and Batches APIs through the ``openai`` SDK, safe to call again after a crash.

Reads (retrieve, list, download) are idempotent and retried. Creations
(upload, create batch) are never blindly retried: an attempt whose answer was
lost may still have happened, so before trying again the provider is asked
whether it did (the upload by its unique file name, the batch by the
``skillgen_run``/``skillgen_seq`` metadata). The same look-up resumes an entry
a killed driver left between recording an intent and recording the id.
Errors become one secret-free line (:func:`skillgen.llm.client.classify`).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable, TypeVar

import openai

from skillgen.llm.client import classify, resolve_api_key
from skillgen.common.errors import UserError
from skillgen.config import GenerationConfig

__all__ = ["BatchApi", "ENDPOINT"]

log = logging.getLogger(__name__)
T = TypeVar("T")
ENDPOINT = "/v1/chat/completions"


class BatchApi:
    def __init__(self, config: GenerationConfig) -> None:
        self.base_url = config.base_url
        self.attempts = config.max_attempts
        self.backoff = (config.backoff_base_s, config.backoff_max_s)
        self.client = openai.OpenAI(base_url=config.base_url, api_key=resolve_api_key(config.api_key_env, config.base_url),
                                    max_retries=0, timeout=config.request_timeout_s)

    def _call(self, what: str, fn: Callable[[], T], found: Callable[[], T | None] | None = None) -> T:
        """``fn`` with backoff on transient errors; for a creation, ``found`` first checks it did not happen."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except openai.OpenAIError as exc:
                err = classify(exc)
            if not err.retryable or attempt == self.attempts:
                raise UserError(f"Batch API at {self.base_url}: {what} failed: {err.error_class}: {err.message}")
            time.sleep(random.uniform(0, min(self.backoff[1], self.backoff[0] * 2 ** attempt)))
            if found is not None:
                hit = self._call(f"{what} (look-up)", found)
                if hit is not None:
                    return hit
        raise AssertionError("unreachable")

    # ---- files ---------------------------------------------------------------------

    def find_file(self, filename: str) -> str | None:
        for f in self.client.files.list(purpose="batch"):
            if f.filename == filename:
                return f.id
        return None

    def upload(self, data: bytes, filename: str, reconcile: bool) -> str:
        """The file id of ``data`` uploaded as ``filename``; ``reconcile``: look for an earlier upload first."""
        if reconcile:
            found = self._call("file look-up", lambda: self.find_file(filename))
            if found is not None:
                log.info("batch input %s was uploaded before the driver stopped: %s", filename, found)
                return found
        return self._call(f"upload of {filename}",
                          lambda: self.client.files.create(file=(filename, data), purpose="batch").id,
                          lambda: self.find_file(filename))

    def content(self, file_id: str) -> str:
        return self._call(f"download of {file_id}", lambda: self.client.files.content(file_id).text)

    # ---- batches -------------------------------------------------------------------

    def find_batch(self, run_id: str, seq: int) -> Any | None:
        for b in self.client.batches.list(limit=100):
            meta = b.metadata or {}
            if meta.get("skillgen_run") == run_id and meta.get("skillgen_seq") == str(seq):
                return b
        return None

    def create(self, file_id: str, run_id: str, seq: int, reconcile: bool) -> Any:
        if reconcile:
            found = self._call("batch look-up", lambda: self.find_batch(run_id, seq))
            if found is not None:
                log.info("batch %d was created before the driver stopped: %s", seq, found.id)
                return found
        meta = {"skillgen_run": run_id, "skillgen_seq": str(seq)}
        return self._call(f"creation of batch {seq}",
                          lambda: self.client.batches.create(input_file_id=file_id, endpoint=ENDPOINT,
                                                             completion_window="24h", metadata=meta),
                          lambda: self.find_batch(run_id, seq))

    def retrieve(self, batch_id: str) -> Any:
        return self._call(f"status of {batch_id}", lambda: self.client.batches.retrieve(batch_id))

    def cancel(self, batch_id: str) -> Any:
        """Cancel; a batch that finished meanwhile (409) is simply returned as it is."""
        def once() -> Any:
            try:
                return self.client.batches.cancel(batch_id)
            except openai.ConflictError:
                return self.client.batches.retrieve(batch_id)
        return self._call(f"cancel of {batch_id}", once)

    def close(self) -> None:
        self.client.close()

