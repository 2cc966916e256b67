"""OpenAI's JSON shapes, in one place, so the server's handlers stay about behaviour.

Bodies follow what api.openai.com returns (fields, types, error ``type`` and
``code`` values), because clients branch on exactly these: the ``openai`` SDK
maps the status to an exception class and copies ``error.code`` /
``error.type`` onto it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApiError", "RATE_LIMIT_DOCS", "SYSTEM_FINGERPRINT", "bad_request", "chat_completion", "completion_id",
           "context_length_exceeded", "insufficient_quota", "invalid_key", "key_fingerprint", "missing_key",
           "model_list", "rate_limited", "server_error", "spurious_rate_limit"]

SYSTEM_FINGERPRINT = "fp_skillgen_sim"
RATE_LIMIT_DOCS = "Visit https://platform.openai.com/account/rate-limits to learn more."


def key_fingerprint(api_key: str) -> str:
    """A short, non-reversible tag of an API key: the most that may ever be logged or returned."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:8]


@dataclass
class ApiError(Exception):
    """An OpenAI error response: HTTP status plus ``{"error": {...}}``; ``reason`` names it in the stats."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = "bad_request"

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", None, param)


def missing_key() -> ApiError:
    return ApiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header "
        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "invalid_request_error",
        reason="unauthorized",
    )


def invalid_key(api_key: str) -> ApiError:
    return ApiError(
        401,
        f"Incorrect API key provided (fingerprint {key_fingerprint(api_key)}). "
        "You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
        reason="unauthorized",
    )


def insufficient_quota() -> ApiError:
    return ApiError(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
        reason="insufficient_quota",
    )


def context_length_exceeded(window: int, prompt_tokens: int, completion_tokens: int) -> ApiError:
    return ApiError(
        400,
        f"This model's maximum context length is {window} tokens. However, you requested "
        f"{prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the messages, "
        f"{completion_tokens} in the completion). Please reduce the length of the messages or completion.",
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
        reason="context_length_exceeded",
    )


def rate_limited(model: str, limit_type: str, limit: int, used: int, requested: int, retry_after: float,
                 headers: dict[str, str]) -> ApiError:
    """429 ``rate_limit_exceeded`` with ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms``."""
    unit = "requests per min (RPM)" if limit_type == "requests" else "tokens per min (TPM)"
    if retry_after == float("inf"):
        message = (f"Request too large for {model} in organization org-simulator on {unit}: "
                   f"Limit {limit}, Requested {requested}. The input or output tokens must be reduced.")
        wait = 60.0
    else:
        wait = retry_after
        message = (f"Rate limit reached for {model} in organization org-simulator on {unit}: Limit {limit}, "
                   f"Used {used}, Requested {requested}. Please try again in {wait:.3g}s. {RATE_LIMIT_DOCS}")
    out = dict(headers)
    out["retry-after"] = str(max(1, int(-(-wait // 1))))
    out["retry-after-ms"] = str(max(1, int(-(-wait * 1000 // 1))))
    return ApiError(429, message, limit_type, "rate_limit_exceeded", None, out, reason="rate_limited")


def spurious_rate_limit(model: str, headers: dict[str, str]) -> ApiError:
    """An injected 429: what a client sees when a shared org limit trips, however well it paces itself."""
    return ApiError(
        429,
        f"Rate limit reached for {model} in organization org-simulator on requests per min (RPM). "
        f"Please try again in 1s. {RATE_LIMIT_DOCS}",
        "requests",
        "rate_limit_exceeded",
        None,
        {**headers, "retry-after": "1", "retry-after-ms": "1000"},
        reason="429",
    )


def server_error(status: int) -> ApiError:
    messages = {
        500: ("The server had an error while processing your request. Sorry about that!", "server_error"),
        502: ("Bad gateway.", "server_error"),
        503: ("The engine is currently overloaded, please try again later.", "server_error"),
        504: ("Gateway timeout: the model did not answer in time.", "timeout"),
    }
    message, type_ = messages.get(status, ("Internal server error.", "server_error"))
    return ApiError(status, message, type_, reason=str(status))


def completion_id() -> str:
    return "chatcmpl-sim" + secrets.token_hex(12)


def chat_completion(model: str, choices: list[tuple[str, str]], prompt_tokens: int,
                    completion_tokens: int) -> dict[str, Any]:
    """A ``chat.completion`` object; ``choices`` are ``(content, finish_reason)`` pairs."""
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish,
            }
            for i, (content, finish) in enumerate(choices)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def model_list(models: tuple[str, ...], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": "skillgen-simulator"} for m in models],
    }
