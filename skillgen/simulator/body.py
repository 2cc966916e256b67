"""The chat-completions request body, validated as OpenAI validates it (one-line 400s naming the field).

Shared by the simulator's chat endpoint (:mod:`.server`) and its batch lines (:mod:`.batches`): a batch
line's ``body`` is the same request, so both accept and refuse the same bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skillgen.simulator import structured, wire

__all__ = ["MAX_N", "ChatRequest", "validate_body"]

MAX_N = 128


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completions body."""

    model: str
    messages: list[dict[str, str]]
    prompt_text: str
    n: int
    max_completion: int | None
    seed: int | None
    temperature: float
    response_format: dict[str, Any] | None


def _message_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def validate_body(body: dict[str, Any]) -> ChatRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise wire.bad_request("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise wire.bad_request("'messages' must be a non-empty array of message objects.", "messages")
    if body.get("stream"):
        raise wire.bad_request("The simulator does not support stream=true.", "stream")
    normalized = []
    for m in messages:
        msg = {"role": str(m.get("role", "user")), "content": _message_text(m.get("content"))}
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        normalized.append(msg)
    n = _int_param(body, "n", 1, MAX_N, 1)
    # max_completion_tokens is the current name, max_tokens the older one; the newer wins when both are sent.
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_value = _int_param(body, key, 1, 10_000_000, None)
    seed = _int_param(body, "seed", -(2**63), 2**63 - 1, None)
    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2:
        raise wire.bad_request("'temperature' must be a number between 0 and 2.", "temperature")
    response_format = body.get("response_format")
    structured.validate_response_format(response_format)
    prompt_text = "\n".join(m["content"] for m in normalized if m["role"] == "user")
    return ChatRequest(model, normalized, prompt_text, n, max_value, seed, float(temperature), response_format)


def _int_param(body: dict[str, Any], name: str, low: int, high: int, default: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise wire.bad_request(f"Invalid '{name}': expected an integer between {low} and {high}.", name)
    return value
