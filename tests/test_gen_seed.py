"""The run seed (issue 29), fast: what each request's seed is made of, the request bodies it gives, that run dirs
made before it still resume, and that a run dir keeps one seed. The end-to-end check (same sentence in every slot
whatever the workers, resume point or mode) is tests/test_gen_reproducible.py (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skillgen.batch.jsonl import build_line
from skillgen.common.errors import UserError
from skillgen.common.storage import resolve
from skillgen.common.taxonomy import Skill
from skillgen.config import GenerationConfig
from skillgen.llm.client import SEED_RANGE, request_seed
from skillgen.llm.pricing import Price
from skillgen.plan import SkillTask
from skillgen.rundir.runstate import open_run_json, request_key

SKILL = Skill("http://data.europa.eu/esco/skill/x", "operate forklift", ("drive forklift",), "Drive forklifts.", "skill/competence")


def test_a_request_seed_depends_on_the_run_seed_key_slots_and_repeat_only():
    base = request_seed(7, "key", range(10), 0)
    assert base == request_seed(7, "key", list(range(10)), 0)  # a pure function: no clock, no order, no state
    others = {request_seed(8, "key", range(10), 0), request_seed(7, "other", range(10), 0),
              request_seed(7, "key", range(1, 10), 0), request_seed(7, "key", range(10), 1)}
    assert base not in others and len(others) == 4
    assert all(0 <= s < SEED_RANGE for s in others | {base})  # fits llama.cpp's 32-bit seed
    assert request_seed(None, "key", range(10), 0) is None  # no run seed: no seed sent, as before


def _body(config: GenerationConfig, task: SkillTask, attempt: int = 0) -> dict:
    return json.loads(build_line(config, task, attempt, Price(0.15, 0.6)).text)["body"]


def test_batch_lines_carry_the_derived_seed_and_are_the_same_for_the_same_config():
    config = GenerationConfig(model="gpt-4o-mini", n_sentences=10, seed=7)
    key = request_key(config, SKILL.skill_id)
    task = SkillTask(key, SKILL, tuple(range(10)))
    assert _body(config, task) == _body(config.model_copy(), task)
    assert _body(config, task)["seed"] == request_seed(7, key, range(10), 0)
    assert _body(config, task, attempt=1)["seed"] == request_seed(7, key, range(10), 1)  # a re-ask is another request
    assert "seed" not in _body(config.model_copy(update={"seed": None}), task)


def test_run_dirs_made_before_the_run_seed_keep_their_fingerprint_and_request_keys():
    """Values computed by the version before run seeds: an unseeded (or seeded) run dir resumes unchanged."""
    skill_id = "http://data.europa.eu/esco/skill/x"
    assert GenerationConfig().fingerprint() == "1c0f3091c7cf640a"
    assert request_key(GenerationConfig(), skill_id) == "e4d8780443c1c64990ebd075"
    assert GenerationConfig(seed=3).fingerprint() == "b61812ce2b646776"
    assert request_key(GenerationConfig(seed=3), skill_id) == "697bb0ef4ad59b03483b9aa1"


def test_a_run_dir_keeps_one_seed_and_the_refusal_names_it(tmp_path: Path):
    run_dir = resolve(tmp_path / "run")
    run_dir.mkdir()
    open_run_json(run_dir, GenerationConfig())
    with pytest.raises(UserError, match=r"\(seed None -> 0\)"):
        open_run_json(run_dir, GenerationConfig(seed=0))
    open_run_json(run_dir, GenerationConfig(workers=3))  # what does not change outputs may change


def test_the_plan_counts_each_keys_answers_from_the_ledger_in_either_mode(tmp_path: Path):
    """``SkillTask.answered`` (what a resumed skill's seeds count on from) is the ledger's 200s per request key:
    online follow-ups are ledgered as ``<key>:<answers>:<slots>``, batch lines as the key; a timeout is no answer."""
    from skillgen.rundir.ledger import LedgerWriter, Outcome, OutcomeEvent, SentEvent
    from skillgen.rundir.runstate import load_progress

    run_dir = resolve(tmp_path / "run")
    run_dir.mkdir()
    ledger = LedgerWriter(run_dir)
    for attempt_id, key, outcome in (("a1", "k1", Outcome.OK), ("a2", "k1:1:abcd1234", Outcome.OK),
                                     ("a3", "k1:2:abcd1234", Outcome.TIMEOUT), ("a4", "k2", Outcome.OK)):
        ledger.add(SentEvent(attempt_id, key, 1, "w1", 50, 100, 0.0, 0.0))
        ledger.add(OutcomeEvent(attempt_id, outcome))
    ledger.flush()
    assert load_progress(run_dir).answered == {"k1": 2, "k2": 1}
