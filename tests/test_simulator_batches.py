"""The simulator's Files and Batches APIs through the real ``openai`` SDK: shapes, lifecycle, faults, billing."""

from __future__ import annotations

import json
import time

import openai
import pytest

from skillgen.simulator import run_in_thread

TERMINAL = ("completed", "failed", "expired", "cancelled")


def _line(i: int, content: str = "say something", model: str = "gpt-4o-mini") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 40}
    return json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})


def _submit(client: openai.OpenAI, lines: list[str], name: str = "in.jsonl"):
    f = client.files.create(file=(name, ("\n".join(lines) + "\n").encode()), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                 metadata={"test": name})


def _wait(client: openai.OpenAI, batch_id: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        b = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != b.status:
            seen.append(b.status)
        if b.status in TERMINAL:
            return b, seen
        time.sleep(0.02)
    raise AssertionError(f"batch did not finish: {seen}")


def _jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    return [] if file_id is None else [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


def test_lifecycle_output_file_and_billing_per_custom_id():
    with run_in_thread(batch_seconds_per_line=0.01, batch_validating_s=0.1, batch_finalizing_s=0.1) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        batch = _submit(client, [_line(i) for i in range(10)])
        assert batch.status == "validating" and batch.metadata == {"test": "in.jsonl"}
        done, seen = _wait(client, batch.id)
        stats = sim.stats()
        listed = [b.id for b in client.batches.list()]
        files = [f.filename for f in client.files.list(purpose="batch")]
    assert seen[-1] == "completed" and "in_progress" in seen
    assert done.request_counts.total == done.request_counts.completed == 10 and done.error_file_id is None
    assert listed == [batch.id] and files == ["in.jsonl"]
    assert stats["batch_billed_by_custom_id"] == {f"req-{i}": 1 for i in range(10)}
    assert stats["files_uploaded"] == {"in.jsonl": 1} and stats["served"] == 0  # batch lines are not online requests
    # gpt-4o-mini at the batch price: $0.075 / $0.30 per 1M tokens
    expected = (stats["batch_prompt_tokens_billed"] * 0.075 + stats["batch_completion_tokens_billed"] * 0.30) / 1e6
    assert stats["batch_cost_usd"] == pytest.approx(expected) and expected > 0


def test_output_lines_are_chat_completions_matched_by_custom_id():
    with run_in_thread(batch_seconds_per_line=0.0) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        done, _ = _wait(client, _submit(client, [_line(i) for i in range(5)]).id)
        out = _jsonl(client, done.output_file_id)
    assert sorted(o["custom_id"] for o in out) == [f"req-{i}" for i in range(5)]
    for o in out:
        assert o["error"] is None and o["response"]["status_code"] == 200
        body = o["response"]["body"]
        assert body["object"] == "chat.completion" and body["usage"]["prompt_tokens"] > 0


def test_malformed_input_file_fails_the_batch_unbilled():
    with run_in_thread() as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        done, seen = _wait(client, _submit(client, [_line(0), "{not json", _line(2)]).id)
        stats = sim.stats()
    assert seen[-1] == "failed" and "in_progress" not in seen
    assert done.errors.data[0].code == "invalid_json_line" and done.errors.data[0].line == 2
    assert stats["batch_billed_by_custom_id"] == {}


def test_enqueued_token_limit_fails_the_second_batch():
    with run_in_thread(batch_seconds_per_line=0.05, batch_enqueued_token_limit=500) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        first = _submit(client, [_line(i) for i in range(6)], "a.jsonl")  # 6 x (~10 + 40) tokens: fits
        second = _submit(client, [_line(i) for i in range(6, 12)], "b.jsonl")  # on top of the first: too many
        a, _ = _wait(client, first.id)
        b, _ = _wait(client, second.id)
        stats = sim.stats()
    assert a.status == "completed" and b.status == "failed"
    assert b.errors.data[0].code == "token_limit_exceeded"
    assert set(stats["batch_billed_by_custom_id"]) == {f"req-{i}" for i in range(6)}


def test_expired_batch_returns_completed_lines_and_expires_the_rest():
    with run_in_thread(batch_seconds_per_line=0.05, batch_validating_s=0.0, batch_expire_s=0.5) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        done, _ = _wait(client, _submit(client, [_line(i) for i in range(40)]).id)
        out, err = _jsonl(client, done.output_file_id), _jsonl(client, done.error_file_id)
        stats = sim.stats()
    assert done.status == "expired" and 0 < len(out) < 40
    assert len(out) + len(err) == 40 and {e["error"]["code"] for e in err} == {"batch_expired"}
    assert sorted(stats["batch_billed_by_custom_id"]) == sorted(o["custom_id"] for o in out)


def test_cancel_keeps_what_was_processed():
    with run_in_thread(batch_seconds_per_line=0.05, batch_validating_s=0.0) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        batch = _submit(client, [_line(i) for i in range(100)])
        while client.batches.retrieve(batch.id).status != "in_progress":
            time.sleep(0.01)
        time.sleep(0.3)
        assert client.batches.cancel(batch.id).status == "cancelling"
        done, _ = _wait(client, batch.id)
        out = _jsonl(client, done.output_file_id)
        stats = sim.stats()
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(batch.id)
    assert done.status == "cancelled" and 0 < len(out) < 100
    assert len(stats["batch_billed_by_custom_id"]) == len(out)


def test_per_line_faults_go_to_the_error_file_or_corrupt_the_body():
    with run_in_thread(fault_rates="500=0.3,malformed=0.3", seed=3) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        done, _ = _wait(client, _submit(client, [_line(i, "Write 3 distinct sentences\nSkill: welding") for i in range(60)]).id)
        out, err = _jsonl(client, done.output_file_id), _jsonl(client, done.error_file_id)
        stats = sim.stats()
    assert err and {e["response"]["status_code"] for e in err} == {500}
    assert done.request_counts.failed == len(err) and done.request_counts.completed == len(out) == 60 - len(err)
    broken = 0
    for o in out:
        try:
            json.loads(o["response"]["body"]["choices"][0]["message"]["content"])
        except ValueError:
            broken += 1
    assert broken > 0 and len(stats["batch_billed_by_custom_id"]) == len(out)
