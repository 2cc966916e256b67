"""Turning what the model says into the message content ``response_format`` asks for.

Clients rely on structured output being honoured: ``json_object`` must give
a JSON object, and ``json_schema`` an instance of the given schema. The
simulator builds that instance from the schema itself (a small JSON Schema
subset: object, array, string, number, integer, boolean, null, enum, const,
anyOf/oneOf, local ``$ref``), putting the sentences into the first
array-of-strings property, so a client with its own schema still gets a
conforming answer.
"""

from __future__ import annotations

import json
from typing import Any

from skillgen.simulator.wire import bad_request

__all__ = ["MAX_DEPTH", "SENTENCES_KEY", "instance_for", "render_answer", "render_sentences",
           "validate_response_format"]

SENTENCES_KEY = "sentences"
MAX_DEPTH = 8


def validate_response_format(response_format: Any) -> None:
    """400 the way OpenAI does for a ``response_format`` it cannot use."""
    if response_format is None:
        return
    if not isinstance(response_format, dict) or response_format.get("type") not in ("text", "json_object", "json_schema"):
        raise bad_request("Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
                          "response_format")
    if response_format["type"] == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad_request("Missing required parameter: 'response_format.json_schema.name'.", "response_format")
        if not isinstance(spec.get("schema", {}), dict):
            raise bad_request("Invalid type for 'response_format.json_schema.schema': expected an object.",
                              "response_format")


def _mode(response_format: dict[str, Any] | None) -> str:
    return (response_format or {}).get("type", "text")


def render_sentences(sentences: list[str], response_format: dict[str, Any] | None) -> str:
    """Sentences as JSON: the skillgen prompt asks for JSON even without ``response_format``."""
    if _mode(response_format) == "json_schema":
        schema = response_format["json_schema"].get("schema") or {}  # type: ignore[index]
        return _dumps(instance_for(schema, sentences))
    return _dumps({SENTENCES_KEY: sentences})


def render_answer(text: str, response_format: dict[str, Any] | None) -> str:
    """A free-text answer in the requested format."""
    mode = _mode(response_format)
    if mode == "json_object":
        return _dumps({"answer": text})
    if mode == "json_schema":
        schema = response_format["json_schema"].get("schema") or {}  # type: ignore[index]
        return _dumps(instance_for(schema, [text]))
    return text


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def instance_for(schema: dict[str, Any], texts: list[str]) -> Any:
    """An instance of ``schema``; the first array of strings gets ``texts``, other strings ``texts[0]``."""
    state = {"used": False}
    return _build(schema, schema, texts, state, 0)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _build(schema: Any, root: dict[str, Any], texts: list[str], state: dict[str, bool], depth: int) -> Any:
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _build(schema[key][0], root, texts, state, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _build(sub, root, texts, state, depth + 1) for name, sub in props.items()}
    if kind == "array":
        items = _resolve(schema.get("items") or {}, root)
        if items.get("type", "string") == "string" and not items.get("enum") and not state["used"]:
            state["used"] = True
            return list(texts)
        return [_build(items, root, texts, state, depth + 1) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "string":
        return texts[0] if texts else ""
    if kind in ("number", "integer"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None

