"""What a real model answered, through skillgen's real client, validator and worker.

Each fixture in ``tests/fixtures/smollm2/`` is every exchange of one skill that the recording proxy kept
while llama.cpp served SmolLM2-135M-Instruct for the main job's skills (``benchmarks/bench_llamacpp.py``;
cut with ``benchmarks/real_answers.py fixture``). :class:`replay.ReplayServer` answers the worker's
requests with those recorded bodies over loopback HTTP, in order, with no rate-limit headers (llama.cpp
sends none); the worker (:class:`skillgen.online.workers.WorkerCore`, the logic of the Ray actor) asks,
validates, keeps rows and re-requests the shortfall exactly as in the run. Only failure modes the real
model produced have a test here; BENCHMARKS.md (issue 21) lists the ones it never produced.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from helpers.online_fakes import FakeBudget, Handle, handle_with_exchange
from helpers.replay import ReplayServer, load_fixture

from skillgen.common.taxonomy import Skill
from skillgen.llm.client import ChatClient
from skillgen.llm.pricing import Price
from skillgen.llm.prompts import build_messages
from skillgen.online.scheduler import Scheduler
from skillgen.online.workers import WorkerCore
from skillgen.plan import SkillTask

KEY_ENV = "SKILLGEN_REAL_ANSWERS_TEST_KEY"


@dataclass
class Replayed:
    fixture: dict[str, Any]
    worker: WorkerCore
    budget: FakeBudget
    requests: list[dict[str, Any]]  # what the worker sent, in order
    failures: list[Any]  # the skill's failure record, if any (reported to the scheduler or still on the worker)

    @property
    def sentences(self) -> list[str]:
        return [r.sentence for r in self.worker.kept_rows]  # out_rows go to the scheduler as they come

    def asked(self, i: int) -> int:
        return asked(self.requests[i])


def asked(request: dict[str, Any]) -> int:
    return int(re.search(r"^Write (\d+) distinct sentences", request["messages"][-1]["content"], re.M).group(1))


def replay(name: str, *, delays: bool = False, **overrides: Any) -> Replayed:
    """Run the fixture's skill through a worker against its recorded answers; as many responses as recorded."""
    fixture = load_fixture(name)
    exchanges = fixture["exchanges"]
    s = fixture["skill"]
    skill = Skill(s["skill_id"], s["label"], tuple(s["alt_labels"]), s["description"], s.get("skill_type", ""))
    key = exchanges[0]["request_key"].split(":")[0]
    n = asked(exchanges[0]["request"])
    cfg = dict(model="smollm2", n_sentences=n, api_key_env=KEY_ENV, json_schema_in="json_object", temperature=1.0,
               request_timeout_s=300.0, max_content_attempts=len(exchanges), backoff_base_s=0.01, backoff_max_s=0.05)
    cfg.update(overrides)
    budget, scheduler = FakeBudget(), Scheduler([], n_sentences=n)
    with ReplayServer(exchanges, delays=delays) as server:
        cfg["base_url"] = server.base_url
        worker = WorkerCore("w1", cfg, Handle(scheduler), Handle(budget), price=Price(0.0, 0.0))

        async def go() -> None:
            client = ChatClient(server.base_url, "smollm2", KEY_ENV, timeout_s=300.0,
                                response_format=worker.cfg.request_response_format(), temperature=1.0)
            try:
                await handle_with_exchange(worker, client, SkillTask(key, skill, tuple(range(n))), timeout=600)
            finally:
                await client.close()

        asyncio.run(go())
    # the fixture answers this prompt: the worker asked exactly what the recorded run asked first
    assert server.requests[0]["messages"] == exchanges[0]["request"]["messages"]
    assert server.requests[0]["messages"] == build_messages(skill, n, worker.cfg.prompt_spec)
    return Replayed(fixture, worker, budget, server.requests, scheduler.drain().failures + worker.out_failures)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-real-answers")


def test_fewer_sentences_than_asked_are_re_requested_with_the_kept_ones_to_avoid():
    """'install heat pump': SmolLM2 answered 5, 2, 2 and 2 sentences to requests for 10, 5, 3 and 2; one answer
    was the label alone ("install heat pump"), one had an unfilled slot ("[industry_specific]"), and its last
    repeated an earlier sentence. Each re-request asks only for the shortfall and lists what is already kept;
    after max_content_attempts answers the skill ends in one failure record that says why, its rows kept."""
    r = replay("fewer_and_label_only")
    label = r.fixture["skill"]["label"]
    assert [r.asked(i) for i in range(len(r.requests))][:3] == [10, 5, 3]
    for i in range(1, len(r.requests)):  # every re-request lists the sentences kept so far
        kept_before = r.sentences[: 10 - r.asked(i)]
        assert all(f"- {s}" in r.requests[i]["messages"][-1]["content"] for s in kept_before)
    assert label not in {s.lower() for s in r.sentences} and not any("[" in s for s in r.sentences)
    assert len(set(r.sentences)) == len(r.sentences) == 8
    [failure] = r.failures
    assert failure.error_class == "validation" and failure.n_missing == 2 and failure.attempts == 4
    assert "label-only" in failure.message and "placeholder" in failure.message and "duplicate" in failure.message
    assert [s.status for s in r.budget.settled] == [200] * 4 and all(not s.headers for s in r.budget.settled)


def test_an_answer_cut_by_max_tokens_keeps_only_its_closed_usable_strings():
    """'wash the laundry': 1,000 completion tokens of numbered résumé advice, cut mid-string (finish_reason
    length). The closed strings are parsed; those with unfilled slots ("[optional skill]") and the over-long
    ones are dropped, the numbering is stripped, nothing past the cut is kept, and the next request may ask
    for more tokens (the truncation counts)."""
    r = replay("cut_by_max_tokens")
    [exchange] = r.fixture["exchanges"]
    assert exchange["response"]["choices"][0]["finish_reason"] == "length"
    assert r.worker.stats.truncated == 1 and r.worker.stats.completion_tokens == 1000
    content = exchange["response"]["choices"][0]["message"]["content"]
    assert all(s in content for s in r.sentences) and 0 < len(r.sentences) < 10
    assert not any("[" in s or s[:2].rstrip(".").isdigit() for s in r.sentences)
    [failure] = r.failures
    assert "truncated JSON" in failure.message and "placeholder" in failure.message
    assert failure.n_missing == 10 - len(r.sentences)


def test_json_that_is_not_quite_json_is_read_and_its_prose_dropped():
    """'electro-optic devices': under llama.cpp's JSON grammar SmolLM2 still wrote a string with raw newlines in
    it (not JSON: control characters must be escaped), holding '"]}' and 193 words of prose. The list is read
    anyway (json strict=False) instead of being salvaged string by string, and the prose, one over-long
    'sentence', is dropped."""
    from skillgen.llm.validate import validate_response

    first = load_fixture("not_quite_json")["exchanges"][0]["response"]["choices"][0]["message"]["content"]
    with pytest.raises(ValueError):
        json.loads(first)  # the recorded answer really is not JSON
    v = validate_response(first, 10, label="electrooptic devices")
    assert v.parse_error is None and v.dropped["over-long"] == 1 and len(v.sentences) == 3
    assert not any("A new job application" in s for s in v.sentences)
    r = replay("not_quite_json")
    assert r.sentences[:3] == v.sentences and r.asked(1) == 7


def test_prompt_echoes_and_fragments_are_not_kept_as_sentences():
    """The same skill's answers also held the prompt's own field line copied back ("Skill: Electrooptic
    Devices, Systems and Components"), a timestamp with a name ("2018-09-30T07:58:57+12:46,Aaron Coaden") and a
    lone "1" as whole "sentences". None of them is a job-ad sentence; each is dropped with its reason, and the
    skill's failure record says why it stayed short."""
    from skillgen.llm.validate import validate_response

    contents = [e["response"]["choices"][0]["message"]["content"] for e in load_fixture("not_quite_json")["exchanges"]]
    assert "Skill: Electrooptic Devices" in contents[0] and '"1"' in contents[1]  # what the model really wrote
    first, second = (validate_response(c, 10, label="electrooptic devices") for c in contents[:2])
    assert first.dropped["prompt-echo"] == 1 and first.dropped["too-short"] == 1 and second.dropped["too-short"] == 1
    r = replay("not_quite_json")
    assert not any(s.lower().startswith("skill:") or len(s.split()) < 3 for s in r.sentences)
    [failure] = r.failures  # its message quotes the last three answers' drops
    assert "too-short" in failure.message and failure.n_missing == 10 - len(r.sentences)
