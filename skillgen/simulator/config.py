"""What a simulator instance does, as one validated, immutable object.

The same :class:`SimulatorConfig` drives all three ways of starting the
server (CLI, subprocess helper, background thread). It round-trips through
command-line flags (:meth:`SimulatorConfig.to_cli_args`) so the subprocess
helper exercises exactly the code path a user gets from ``skillgen
sim-server``. The API key to require is deliberately *not* a flag there:
command lines are visible to every local user, so it travels in the
environment variable :data:`REQUIRE_KEY_ENV`.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skillgen.simulator.faults import FaultKind, parse_fault_kind

__all__ = ["DEFAULT_MODELS", "LatencySpec", "REQUIRE_KEY_ENV", "SimulatorConfig", "format_fault_rates",
           "parse_fault_rates"]

REQUIRE_KEY_ENV = "SKILLGEN_SIM_REQUIRE_KEY"
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "simulator")  # "simulator": the pipeline's keyless default model


class LatencySpec(BaseModel):
    """Per-request service time: ``fixed:S``, ``uniform:LO,HI`` or ``lognormal:MU,SIGMA`` (seconds).

    ``lognormal`` samples ``exp(N(mu, sigma))`` seconds, the heavy right tail
    real LLM endpoints show.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    a: float = 0.0
    b: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "LatencySpec":
        kind, _, params = text.strip().partition(":")
        kind = kind.strip().lower()
        try:
            values = [float(p) for p in params.split(",")] if params.strip() else []
        except ValueError:
            raise ValueError(f"latency {text!r}: parameters must be numbers") from None
        expected = {"fixed": 1, "uniform": 2, "lognormal": 2}
        if kind not in expected:
            raise ValueError(f"latency {text!r}: use fixed:S, uniform:LO,HI or lognormal:MU,SIGMA")
        if len(values) != expected[kind]:
            raise ValueError(f"latency {text!r}: {kind} takes {expected[kind]} number(s)")
        return cls(kind=kind, a=values[0], b=values[1] if len(values) > 1 else 0.0)

    @model_validator(mode="after")
    def _check(self) -> "LatencySpec":
        if self.kind == "fixed" and self.a < 0:
            raise ValueError("fixed latency must be >= 0")
        if self.kind == "uniform" and not 0 <= self.a <= self.b:
            raise ValueError("uniform latency needs 0 <= LO <= HI")
        if self.kind == "lognormal" and self.b < 0:
            raise ValueError("lognormal sigma must be >= 0")
        return self

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return math.exp(rng.gauss(self.a, self.b))

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.a:g}"
        return f"{self.kind}:{self.a:g},{self.b:g}"


def parse_fault_rates(text: str) -> dict[FaultKind, float]:
    """``"500=0.05,hang=0.01"`` -> ``{FaultKind.SERVER_ERROR: 0.05, FaultKind.HANG: 0.01}``."""
    rates: dict[FaultKind, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"fault rate {item!r}: use KIND=RATE, e.g. 500=0.05")
        try:
            rates[parse_fault_kind(name)] = float(value)
        except ValueError as exc:
            raise ValueError(f"fault rate {item!r}: {exc}") from None
    return rates


def format_fault_rates(rates: dict[FaultKind, float]) -> str:
    return ",".join(f"{kind.value}={rate:g}" for kind, rate in rates.items())


class SimulatorConfig(BaseModel):
    """Everything the server needs; strings are accepted where the CLI would pass them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    rpm: int = Field(0, ge=0, description="requests per minute per API key; 0 = unlimited")
    tpm: int = Field(0, ge=0, description="tokens per minute per API key; 0 = unlimited")
    latency: LatencySpec = LatencySpec()
    fault_rates: dict[FaultKind, float] = Field(default_factory=dict)
    seed: int = 0
    hang_seconds: float = Field(120.0, gt=0, description="how long a 'hang' fault holds the request")
    require_key: str | None = Field(None, repr=False, description="reject every other bearer key with 401")
    stats_file: Path | None = None
    models: tuple[str, ...] = DEFAULT_MODELS
    context_window: int = Field(128_000, gt=0, description="prompt + max completion tokens above this: 400")
    assumed_max_tokens: int = Field(
        4096, gt=0, description="completion tokens the rate limiter charges when a request sets no max_tokens"
    )
    shutdown_timeout: float = Field(1.0, ge=0, description="grace for in-flight requests on stop")
    # Batch API (see skillgen.simulator.batches): how fast batches move, when they expire, the queue limit
    batch_seconds_per_line: float = Field(0.001, ge=0, description="processing time of one batch line")
    batch_validating_s: float = Field(0.05, ge=0, description="time a batch spends in 'validating'")
    batch_finalizing_s: float = Field(0.05, ge=0, description="time a batch spends in 'finalizing'")
    batch_expire_s: float = Field(86400.0, gt=0, description="a batch not done this long after creation expires")
    batch_enqueued_token_limit: int = Field(0, ge=0, description="enqueued tokens per model (prompt + max_tokens); 0 = unlimited")

    @field_validator("latency", mode="before")
    @classmethod
    def _latency(cls, value: Any) -> Any:
        return LatencySpec.parse(value) if isinstance(value, str) else value

    @field_validator("fault_rates", mode="before")
    @classmethod
    def _fault_rates(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_fault_rates(value)
        if isinstance(value, dict):
            return {parse_fault_kind(str(k)): v for k, v in value.items()}
        return value

    @field_validator("fault_rates")
    @classmethod
    def _rates_are_probabilities(cls, rates: dict[FaultKind, float]) -> dict[FaultKind, float]:
        if any(not 0.0 <= r <= 1.0 for r in rates.values()):
            raise ValueError("each fault rate must be within [0, 1]")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {sum(rates.values()):g}; at most one fault per request, so the sum must be <= 1")
        return rates

    @field_validator("require_key")
    @classmethod
    def _key_not_blank(cls, key: str | None) -> str | None:
        if key is not None and not key.strip():
            raise ValueError("require_key must be non-empty")
        return key

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        return tuple(value.split(",")) if isinstance(value, str) else value

    def to_cli_args(self) -> list[str]:
        """Flags of ``skillgen sim-server`` reproducing this config (except ``require_key``, see module doc)."""
        args = [
            "--host", self.host, "--port", str(self.port), "--rpm", str(self.rpm), "--tpm", str(self.tpm),
            "--latency", str(self.latency), "--seed", str(self.seed), "--hang-seconds", repr(self.hang_seconds),
            "--models", ",".join(self.models), "--context-window", str(self.context_window),
            "--assumed-max-tokens", str(self.assumed_max_tokens), "--shutdown-timeout", repr(self.shutdown_timeout),
            "--batch-seconds-per-line", repr(self.batch_seconds_per_line),
            "--batch-validating-s", repr(self.batch_validating_s), "--batch-finalizing-s", repr(self.batch_finalizing_s),
            "--batch-expire-s", repr(self.batch_expire_s), "--batch-enqueued-token-limit", str(self.batch_enqueued_token_limit),
        ]
        if self.fault_rates:
            args += ["--fault-rate", format_fault_rates(self.fault_rates)]
        if self.stats_file is not None:
            args += ["--stats-file", str(self.stats_file)]
        return args

    def summary(self) -> dict[str, Any]:
        """The config as shown in ``/v1/stats`` (never the key, only whether one is required)."""
        return {
            "rpm": self.rpm,
            "tpm": self.tpm,
            "latency": str(self.latency),
            "fault_rates": {k.value: v for k, v in self.fault_rates.items()},
            "seed": self.seed,
            "hang_seconds": self.hang_seconds,
            "key_required": self.require_key is not None,
            "models": list(self.models),
            "context_window": self.context_window,
            "assumed_max_tokens": self.assumed_max_tokens,
            "batch_seconds_per_line": self.batch_seconds_per_line,
            "batch_expire_s": self.batch_expire_s,
            "batch_enqueued_token_limit": self.batch_enqueued_token_limit,
        }
