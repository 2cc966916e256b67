"""One validated configuration object for estimate and run.

Why a single pydantic model: the same settings come from a TOML file, CLI
overrides and Python callers, and every mistake (negative limit, unknown
field, empty model name) must become a :class:`UserError` naming the field
before a token is spent. The model never holds a secret: only the *name* of
the environment variable with the API key is stored, so ``repr``,
``run.json`` and Ray task payloads cannot leak it.

``fingerprint()`` hashes only the fields that change what a request returns
(model, prompt, sampling, sentences per skill). Limits, spend cap, workers and
the skill slice may change between reruns of one run dir; the fingerprint
may not, because resume relies on request keys meaning the same thing.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from skillgen.common.errors import UserError, format_validation_error, suggest
from skillgen.llm.prompts import PROMPT_VERSION, PromptSpec, response_format

__all__ = ["DEFAULT_BASE_URL", "GenerationConfig", "TOML_SECTIONS", "load_config", "make_config", "read_toml",
           "toml_values"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class GenerationConfig(BaseModel):
    """Everything a generation run needs (see ``skillgen run --help`` for each field)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # endpoint
    base_url: str = DEFAULT_BASE_URL
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    json_schema: bool = True  # response_format json_schema; False -> json_object mode
    response_format: bool = True  # False -> plain JSON instructions only (endpoint lacks response_format)
    # where the JSON schema goes: OpenAI's json_schema format (OpenAI, vLLM) or the "schema" field of a
    # json_object format (llama-cpp-python's server, which rejects type json_schema)
    json_schema_in: Literal["json_schema", "json_object"] = "json_schema"

    # sampling
    temperature: float | None = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    # the run seed: each request carries a seed derived from it, its request key and the slots it asks for
    # (skillgen.llm.client.request_seed), so one config writes the same data (exactly against the simulator or
    # llama.cpp, best-effort against a provider); None sends no seed. In the fingerprint: one seed per run dir.
    seed: int | None = None
    max_tokens: int = Field(default=1000, ge=16)  # ceiling for completion tokens per request
    adaptive_max_tokens: bool = True  # size max_tokens to a learned quantile of completion lengths
    max_tokens_quantile: float = Field(default=0.995, gt=0.5, lt=1.0)
    max_tokens_margin: float = Field(default=1.15, ge=1.0)

    # prompt & validation
    n_sentences: int = Field(default=10, ge=1, le=200)
    prompt_version: str = PROMPT_VERSION
    include_alt_labels: bool = True
    max_alt_labels: int = Field(default=6, ge=0)
    max_sentence_words: int = Field(default=60, ge=3)
    max_content_attempts: int = Field(default=4, ge=1)  # 200 responses per skill before a failure record

    # limits (None: not enforced locally; learned from x-ratelimit-limit-* headers when sent)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    input_tpm: int | None = Field(default=None, gt=0)
    output_tpm: int | None = Field(default=None, gt=0)
    spend_cap_usd: float | None = Field(default=None, ge=0.0)
    # how the ledger prices an attempt whose outcome is unknown (timeout, lost connection, dead worker):
    # its worst case (prompt + max_tokens; the spend cap then holds whatever is killed when), its prompt, or $0
    unknown_outcome: Literal["worst_case", "prompt_only", "free"] = "worst_case"
    prices_file: str | None = None
    price_input_per_1m: float | None = Field(default=None, ge=0.0)
    price_output_per_1m: float | None = Field(default=None, ge=0.0)

    # execution
    workers: int | None = Field(default=None, gt=0)  # None: one per CPU in the Ray cluster
    worker_num_cpus: float = Field(default=1.0, ge=0.0)
    # custom Ray resources per generation worker, e.g. {"worker_node": 1} to keep them on labelled nodes
    worker_resources: dict[str, float] | None = None
    max_active_per_worker: int = Field(default=512, gt=0)  # skills held by one worker (not a concurrency limit)
    chunk_size: int = Field(default=8, gt=0)
    flush_rows: int = Field(default=2000, gt=0)
    flush_seconds: float = Field(default=5.0, gt=0.0)
    max_attempts: int = Field(default=8, ge=1)  # transport attempts per request (429/5xx/timeouts)
    backoff_base_s: float = Field(default=0.5, gt=0.0)
    backoff_max_s: float = Field(default=30.0, gt=0.0)
    request_timeout_s: float = Field(default=120.0, gt=0.0)
    connect_timeout_s: float = Field(default=10.0, gt=0.0)
    ray_address: str | None = None
    progress_interval_s: float = Field(default=10.0, gt=0.0)
    retry_failures: bool = False  # rerun: retry skills that have failure records
    preflight: bool = True  # check the endpoint answers before starting workers

    # Batch API (mode = "batch"; see skillgen.batch): same prompts, keys, validation and shards as online
    mode: Literal["online", "batch"] = "online"
    batch_max_requests: int = Field(default=50_000, ge=1, le=50_000)  # requests per input file (OpenAI: 50,000)
    batch_max_bytes: int = Field(default=200 * 1024 * 1024, ge=4096, le=200 * 1024 * 1024)  # per input file (200 MB)
    batch_max_enqueued_tokens: int | None = Field(default=None, gt=0)  # prompt + max_tokens queued at once, per model
    batch_poll_min_s: float = Field(default=10.0, gt=0.0)  # first poll interval; backs off to batch_poll_max_s
    batch_poll_max_s: float = Field(default=300.0, gt=0.0)
    batch_max_rounds: int = Field(default=6, ge=1)  # batches one request key may go into before a failure record
    batch_shortfall: Literal["batch", "online"] = "batch"  # what a finished batch left missing: follow-up batches, or online

    # data
    run_dir: str = "runs/skillgen"
    esco: str | None = None
    limit: int | None = Field(default=None, ge=0)
    sample: int | None = Field(default=None, ge=0)
    sample_seed: int = 0
    skill_types: list[str] | None = None
    labels: list[str] | None = None

    @field_validator("model", "base_url", "api_key_env")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        parts = urlsplit(v)
        # base_url is written to run.json and logs: credentials belong in the key's env var
        if parts.username or parts.password or parts.query:
            raise ValueError("must not carry credentials or a query string; put the key in the api_key_env variable")
        return v.rstrip("/")

    @field_validator("run_dir")
    @classmethod
    def _run_dir(cls, v: str) -> str:
        from skillgen.common.storage import check_uri, is_uri

        if is_uri(v):  # run_dir is written to run.json and logs: credentials belong in AWS_* variables
            try:
                check_uri(v, "run_dir")
            except UserError:
                raise ValueError("must not carry credentials; set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment") from None
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        # A user who pastes the key itself into api_key_env would write it into run.json.
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) or v.startswith(("sk-", "sk_")) or len(v) > 100:
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not the key itself")
        return v

    # ---- derived -------------------------------------------------------------

    @property
    def prompt_spec(self) -> PromptSpec:
        return PromptSpec(
            n_sentences=self.n_sentences,
            include_alt_labels=self.include_alt_labels,
            max_alt_labels=self.max_alt_labels,
            version=self.prompt_version,
        )

    def sampling_params(self) -> dict[str, Any]:
        """Parameters that shape the output (part of the request key)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}

    def request_response_format(self) -> dict[str, Any] | None:
        """The ``response_format`` every request carries (None with ``response_format = false``)."""
        if not self.response_format:
            return None
        return response_format(self.json_schema, schema_in_json_object=self.json_schema_in == "json_object")

    def output_fields(self) -> dict[str, Any]:
        extra = {"json_schema_in": self.json_schema_in} if self.json_schema_in != "json_schema" else {}  # old fingerprints stay
        return {**extra,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "n_sentences": self.n_sentences,
            "include_alt_labels": self.include_alt_labels,
            "max_alt_labels": self.max_alt_labels,
            "json_schema": self.json_schema,
            "response_format": self.response_format,
            "max_sentence_words": self.max_sentence_words,
            **self.sampling_params(),
        }

    def fingerprint(self) -> str:
        """Hash of the fields that change outputs; a run dir keeps one fingerprint for life."""
        blob = json.dumps(self.output_fields(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def public_dict(self) -> dict[str, Any]:
        """The config as stored in run.json: no secrets (there are none, by construction)."""
        return self.model_dump(mode="json")


def make_config(values: Mapping[str, Any], source: str = "config", names: Mapping[str, str] | None = None) -> GenerationConfig:
    try:
        return GenerationConfig(**values)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source, names, GenerationConfig.model_fields)) from None


# TOML sections are flattened: [endpoint] base_url=..., [limits] tpm=... are all plain fields.
TOML_SECTIONS = ("endpoint", "sampling", "prompt", "limits", "execution", "data", "generation")


def read_toml(path: str | Path, what: str = "config file", flag: str = "--config") -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a one-line :class:`UserError` naming it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{flag} {path}: {what} does not exist")
    if not path.is_file():
        raise UserError(f"{flag} {path}: is a directory, expected a TOML {what}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{flag} {path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise UserError(f"{flag} {path}: not valid TOML (not UTF-8 text)") from None


def toml_values(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A generation TOML's fields (sections flattened) and, per field, how the file spelled it."""
    raw = read_toml(path)
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for key, value in raw.items():
        if key in TOML_SECTIONS and isinstance(value, dict):
            values.update(value)
            names.update({k: f"--config {path}: [{key}] {k}" for k in value})
        elif isinstance(value, dict):
            guess = suggest(key, TOML_SECTIONS)
            raise UserError(f"--config {path}: unknown section [{key}]" + (f"; did you mean [{guess}]?" if guess else "")
                            + f" (known: {', '.join(TOML_SECTIONS)})")
        else:
            values[key] = value
            names[key] = f"--config {path}: {key}"
    return values, names


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                flags: Mapping[str, str] | None = None) -> GenerationConfig:
    """Config from a TOML file (optional) with ``overrides`` (None values ignored) on top.

    ``flags`` names the command-line flag of each override (``n_sentences`` -> ``-n``), so an error says
    what the user typed.
    """
    values, names = toml_values(path) if path else ({}, {})
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            if flags and key in flags:
                names[key] = flags[key]
            else:
                names.pop(key, None)
    return make_config(values, source=f"--config {path}" if path else "config", names=names)

