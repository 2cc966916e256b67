"""Batch mode's pure parts: batch prices, packing within limits, matching results by custom_id."""

from __future__ import annotations

import json

import pytest

from skillgen.batch.collect import collect_lines
from skillgen.batch.jsonl import BatchLine, custom_id_for, pack
from skillgen.config import GenerationConfig
from skillgen.llm.pricing import Price, batch_price, price_for


def _pair(p: Price) -> tuple[float, float]:
    return p.input_per_1m, p.output_per_1m


def test_batch_price_from_the_table_and_the_discount_for_per_run_prices():
    assert _pair(batch_price(price_for("gpt-4o-mini"), "gpt-4o-mini")) == (0.075, 0.3)
    partial = price_for("gpt-4o-mini", input_per_1m=1.0)  # overridden input: its batch price is the discount
    assert _pair(batch_price(partial, "gpt-4o-mini")) == (0.5, 0.3)
    assert _pair(batch_price(price_for("own-model", None, 2.0, 4.0), "own-model")) == (1.0, 2.0)


def _line(i: int, tokens: int = 100, usd: float = 0.01, size: int = 50) -> BatchLine:
    return BatchLine(f"c{i}", f"k{i}", f"s{i}", f"label {i}", (0, 1), (), "x" * (size - 1) + "\n", tokens, usd)


@pytest.mark.parametrize("limits, expected", [
    (dict(max_requests=3, max_bytes=10**6, token_room=1e9, spend_room=1e9), 3),
    (dict(max_requests=100, max_bytes=120, token_room=1e9, spend_room=1e9), 2),  # 50 bytes a line
    (dict(max_requests=100, max_bytes=10**6, token_room=450, spend_room=1e9), 4),
    (dict(max_requests=100, max_bytes=10**6, token_room=1e9, spend_room=0.05), 5),
    (dict(max_requests=100, max_bytes=10**6, token_room=1e9, spend_room=0.005), 0),
])
def test_pack_stops_at_the_first_limit(limits, expected):
    p = pack([_line(i) for i in range(10)], **limits)
    assert (len(p.lines) if p else 0) == expected
    if p:
        assert p.tokens == 100 * expected and p.bytes == 50 * expected and p.worst_case_usd == pytest.approx(0.01 * expected)


def test_custom_id_is_the_request_key_for_a_first_request_only():
    assert custom_id_for("abc", [0, 1, 2], 3, 0) == "abc"
    follow_up = custom_id_for("abc", [2], 3, 1)
    assert follow_up.startswith("abc:1:") and follow_up != custom_id_for("abc", [1], 3, 1)


def _result(custom_id: str, content: str, pt: int = 100, ct: int = 50) -> str:
    body = {"choices": [{"message": {"content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct}}
    return json.dumps({"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None})


def test_results_in_any_order_are_matched_validated_and_costed():
    config = GenerationConfig(model="gpt-4o-mini", n_sentences=3)
    price = Price(1.0, 2.0)
    requests = {
        "a": {"request_key": "ka", "skill_id": "sa", "label": "A", "missing": [0, 1, 2], "avoid": []},
        "b": {"request_key": "kb", "skill_id": "sb", "label": "B", "missing": [1, 2], "avoid": ["You weld pipes daily."]},
        "c": {"request_key": "kc", "skill_id": "sc", "label": "C", "missing": [0, 1, 2], "avoid": []},
        "d": {"request_key": "kd", "skill_id": "sd", "label": "D", "missing": [0, 1, 2], "avoid": []},
    }
    output = "\n".join([
        _result("b", json.dumps({"sentences": ["You weld pipes daily.", "You inspect welds."]})),  # one repeat
        _result("a", json.dumps({"sentences": ["One for a.", "Two for a.", "Three for a."]})),
        _result("c", '{"sentences": ["broken'),  # invalid JSON in the body: billed, no sentence
    ])
    errors = "\n".join([
        json.dumps({"custom_id": "d", "response": {"status_code": 500, "body": {"error": {"message": "boom"}}},
                    "error": None}),
        json.dumps({"custom_id": "zz-unknown", "response": None, "error": {"code": "batch_expired", "message": "x"}}),
    ])
    res = collect_lines(config, price, requests, output, errors)
    by_key = {}
    for row in res.rows:
        by_key.setdefault(row.request_key, []).append((row.sample_idx, row.sentence))
    assert by_key == {"ka": [(0, "One for a."), (1, "Two for a."), (2, "Three for a.")], "kb": [(1, "You inspect welds.")]}
    one = price.cost(100, 50)
    assert res.cost_usd == pytest.approx(3 * one) and res.unattributed_usd == pytest.approx(one)
    assert sum(r.cost_usd for r in res.rows) + res.unattributed_usd == pytest.approx(res.cost_usd)
    assert res.answered == {"ka", "kb", "kc", "kd"}
    assert set(res.problems) == {"kb", "kc", "kd"} and "HTTP 500" in res.problems["kd"]


def test_batch_mode_joins_ray_for_its_gauges_only_when_a_cluster_is_named(monkeypatch, caplog):
    """No address and no RAY_ADDRESS: no Ray is started (batch mode needs none). A named cluster that cannot
    be joined, for whatever reason, costs the gauges and a warning line, never the run (its batches are paid)."""
    import skillgen.common.raycluster as raycluster
    from skillgen.batch.driver import _connect_for_metrics

    calls = []

    def refuse(address=None, **kwargs):
        calls.append(address)
        raise RuntimeError("version mismatch: cluster 2.59, client 2.60\nsecond line")

    monkeypatch.setattr(raycluster, "init_ray", refuse)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _connect_for_metrics(GenerationConfig(model="gpt-4o-mini", mode="batch"))
    assert calls == []
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    with caplog.at_level("WARNING", logger="skillgen.batch.driver"):
        _connect_for_metrics(GenerationConfig(model="gpt-4o-mini", mode="batch"))
    assert calls == [None]
    assert "no Ray metrics for this batch run: version mismatch: cluster 2.59, client 2.60" in caplog.text
    assert "second line" not in caplog.text
