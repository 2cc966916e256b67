"""The ingress replica: the FastAPI app of :mod:`skilltrain.serve.api` in front of the model replicas' handle.

Extraction has no side effects, so a request whose model replica died under it is sent once more
(Serve routes it to a live replica, or waits for the replacement it starts); if that fails too, or
the request outlives ``request_timeout_s`` in all, the caller gets a 503 with one line, never a hang
or a 500. The bearer token is read here from the replica's own environment (``api_key_env`` names
the variable), so it is in no config, no Ray object and no log.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from skilltrain.serve.api import Unavailable, create_api
from skilltrain.serve.config import AppConfig
from skilltrain.serve.messages import ExtractAnswer, ExtractJob

#: a request is sent at most this many times when its model replica dies under it
ATTEMPTS = 2
_REPLICA_GONE = (ActorDiedError, ActorUnavailableError, RayActorError, DeploymentUnavailableError)


def read_api_key(variable: str | None) -> bytes | None:
    """The bearer token from ``$variable`` (None: no auth); refuses to start without it."""
    if variable is None:
        return None
    value = os.environ.get(variable, "").strip()
    if not value:
        raise RuntimeError(f"api_key_env: ${variable} is not set (or empty) in this replica's environment; "
                           "set it on every node, or serve without --api-key-env")
    return value.encode()


class ModelClient:
    """:class:`~skilltrain.serve.api.Backend` over the model deployment's handle: timeout, one retry, 503."""

    def __init__(self, handle: DeploymentHandle, timeout_s: float):
        self.handle, self.timeout_s = handle, timeout_s

    async def extract(self, job: ExtractJob) -> ExtractAnswer:
        return await self._call("extract", job)

    async def info(self) -> dict[str, Any]:
        return await self._call("info")

    async def _call(self, method: str, *args: Any) -> Any:
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(1, ATTEMPTS + 1):
            response: DeploymentResponse = getattr(self.handle, method).remote(*args)
            try:
                return await asyncio.wait_for(_result(response), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                response.cancel()
                raise Unavailable(f"timeout: no answer within {self.timeout_s:g} s (request_timeout_s); retry later") from None
            except BackPressureError:
                raise Unavailable("busy: every model replica's queue is full (max_queued_requests); retry later") from None
            except _REPLICA_GONE:
                if attempt == ATTEMPTS or time.monotonic() >= deadline:
                    raise Unavailable("unavailable: the model replica died while answering and no other answered; "
                                      "Serve is replacing it, retry later") from None
        raise AssertionError("unreachable")


async def _result(response: DeploymentResponse) -> Any:
    return await response


@serve.deployment(name="SkillAPI", ray_actor_options={"num_cpus": 0})
@serve.ingress()
class SkillAPI:
    """HTTP in, one handle call per request to :class:`~skilltrain.serve.batching.SkillModel`, JSON out."""

    def __init__(self, model: DeploymentHandle, config: dict[str, Any]):
        self.config = AppConfig.model_validate(config)
        self.api_key = read_api_key(self.config.api_key_env)
        self.client = ModelClient(model, self.config.request_timeout_s)

    def __serve_build_asgi_app__(self):
        return create_api(self.config, self.client, self.api_key)
