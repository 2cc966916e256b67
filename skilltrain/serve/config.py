"""``ServeConfig``: every knob of ``skilltrain serve`` in one validated object, printable as a Serve config file.

The same object drives the local command (``skilltrain serve --model DIR``) and a cluster deployment
(``skilltrain serve ... --print-config > serve.yaml; serve deploy serve.yaml``, or the ``serveConfigV2``
of ``cluster/rayservice.yaml``): :meth:`ServeConfig.serve_file` writes Serve's own config schema with
:class:`AppConfig` as the application's ``args``, and :func:`skilltrain.serve.app.build_app` turns those
args back into the two deployments. Replica counts, batching and limits therefore live in one place,
not half in code and half in a ``deployments:`` override.

Nothing secret is ever part of it: ``api_key_env`` names the environment variable that holds the key,
and each ingress replica reads it from its own environment.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

APP_NAME = "skilltrain"
BUILDER = "skilltrain.serve.app:build_app"
LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8000
#: sentences one model call gathers from concurrent requests (Serve's max_batch_size), per device
DEFAULT_BATCH_SENTENCES = {"cpu": 64, "cuda": 512}
#: the proxy's own timeout is this much longer than the ingress's, so a slow request gets the ingress's JSON 503
PROXY_TIMEOUT_MARGIN_S = 5.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Autoscale(BaseModel):
    """Serve autoscaling bounds for both deployments (``--autoscale MIN,MAX``)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(ge=0)
    max_replicas: int = Field(ge=1)
    #: requests in flight per model replica Serve aims for before it adds one
    target_ongoing_requests: float = Field(16.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Autoscale":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"autoscale: max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})")
        return self


class AppConfig(BaseModel):
    """What the Serve application is built from (the ``args`` of its entry in a Serve config file)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # the model
    model: str = Field("minilm", description="model dir (local path or s3:// URI) or a name: minilm, mpnet")
    esco: Optional[str] = Field(None, description="ESCO skills CSV on every node; None = the bundled taxonomy")
    backend: Optional[str] = Field(None, description="sentence encoder backend (skilltrain extract --backend); None = the device's default")
    device: Literal["cpu", "cuda"] = Field("cpu", description="cuda gives each model replica one GPU")
    max_seq_length: Optional[int] = Field(None, ge=8, description="token limit per sentence; None = the model's")

    # replicas
    replicas: int = Field(1, ge=1, description="model replicas (and ingress replicas) when not autoscaling")
    autoscale: Optional[Autoscale] = None
    cpus_per_replica: float = Field(1.0, gt=0, description="CPUs reserved per model replica, and its torch / ONNX threads")

    # batching across requests
    max_batch_size: Optional[int] = Field(None, ge=1, description="sentences per model call; None = 64 on CPU, 512 on GPU")
    batch_wait_ms: float = Field(5.0, ge=0, description="how long a model call waits for more sentences before it runs")
    max_ongoing_requests: Optional[int] = Field(
        None, ge=1, description="requests one model replica holds at once, its batches fill from these; None = max_batch_size"
    )
    max_queued_requests: int = Field(1024, ge=1, description="requests waiting for a model replica before new ones get 503")

    # limits on what a caller may send
    max_texts: int = Field(100, ge=1, description="texts per request (more: 413)")
    max_chars: int = Field(20_000, ge=1, description="characters per text (more: 413)")
    max_top_k: int = Field(100, ge=1, description="largest top_k a request may ask for (more: 422)")
    request_timeout_s: float = Field(30.0, gt=0, description="a request not answered by then gets 503")

    # auth
    api_key_env: Optional[str] = Field(
        None, description="environment variable (on every node) holding the bearer token every request must carry; None = no auth"
    )

    @model_validator(mode="after")
    def _resolve(self) -> "AppConfig":
        if self.max_batch_size is None:
            self.max_batch_size = DEFAULT_BATCH_SENTENCES[self.device]
        if self.max_ongoing_requests is None:  # one-sentence requests fill a batch only if that many are in hand
            self.max_ongoing_requests = self.max_batch_size
        return self

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, name: Optional[str]) -> Optional[str]:
        if name is not None and not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        return name

    @property
    def threads(self) -> int:
        """Torch / ONNX Runtime threads of a model replica: its reserved CPUs, at least one."""
        return max(1, int(self.cpus_per_replica))

    @property
    def max_body_bytes(self) -> int:
        """The largest request body the limits allow (every character JSON-escaped: 12 bytes for one outside the
        Basic Multilingual Plane, a surrogate pair \\uXXXX\\uXXXX), plus room for the rest."""
        return self.max_texts * (12 * self.max_chars + 8) + 4096

    def replica_options(self) -> dict[str, Any]:
        """``num_replicas`` or ``autoscaling_config`` (Serve deployment options), shared by both deployments."""
        if self.autoscale is None:
            return {"num_replicas": self.replicas}
        return {"autoscaling_config": self.autoscale.model_dump()}


class HttpConfig(BaseModel):
    """Where Serve's HTTP proxies listen (cluster-wide Serve settings, not the application's)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(LOOPBACK, description="address the proxies bind; 0.0.0.0 to accept other machines")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)


class ServeConfig(BaseModel):
    """One ``skilltrain serve``: the proxies' address and the application."""

    model_config = ConfigDict(extra="forbid")

    http: HttpConfig = Field(default_factory=HttpConfig)
    app: AppConfig = Field(default_factory=AppConfig)

    def http_options(self) -> dict[str, Any]:
        return {
            "host": self.http.host,
            "port": self.http.port,
            "request_timeout_s": self.app.request_timeout_s + PROXY_TIMEOUT_MARGIN_S,
        }

    def serve_file(self) -> dict[str, Any]:
        """This config as a Serve config file (``serve deploy``, KubeRay's ``serveConfigV2``)."""
        return {
            "proxy_location": "EveryNode",
            "http_options": self.http_options(),
            "applications": [
                {
                    "name": APP_NAME,
                    "route_prefix": "/",
                    "import_path": BUILDER,
                    "args": self.app.model_dump(mode="json"),
                }
            ],
        }

    def serve_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.serve_file(), sort_keys=False)
