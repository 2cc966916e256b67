"""Unit tests of the simulator's pure parts: limiter math, faults, config, content, structured output.

No server here; the HTTP behaviour is covered by the other test_simulator_* files.
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from pathlib import Path

import pytest

from skillgen.llm.prompts import build_messages
from skillgen.simulator import cli
from skillgen.simulator.config import LatencySpec, SimulatorConfig, parse_fault_rates
from skillgen.simulator.content import SkillWriter, parse_prompt, writer_for
from skillgen.simulator.faults import FaultInjector, FaultKind, corrupt_json, wrong_count
from skillgen.simulator.lexicon import gerund
from skillgen.simulator.ratelimit import RateLimiter, format_duration
from skillgen.simulator.structured import instance_for, render_sentences
from skillgen.common.taxonomy import Skill

SKILLS = [
    Skill("s1", "manage musical staff", ("manage staff of music", "coordinate duties of musical staff", "direct musical staff"),
          "Assign and manage staff tasks in areas such as scoring, arranging, copying music and vocal coaching."),
    Skill("s2", "labour legislation", ("employment law", "employment legislation"),
          "Legislation, on a national or international level, that governs labour conditions in various fields "
          "between labour parties such as the government, employees, employers, and trade unions."),
    Skill("s3", "inorganic chemistry", (), "The chemistry of substances that do not contain hydrocarbon radicals."),
    Skill("s4", "Java (computer programming)", ("Java",),
          "The techniques and principles of software development, such as analysis, algorithms, coding, "
          "testing and compiling of programming paradigms in Java."),
    Skill("s5", "practise singing", ("practice singing", "engage in singing"), "Study and practise lyrics, melody, and rhythm of songs."),
    Skill("s6", "set up reinforcing steel", ("set up steel reinforcement",),
          "Set up reinforcing steel, or rebar, to be used for reinforced concrete construction. Set mats and "
          "columns securely in place to prepare for concrete pouring."),
    Skill("s7", "order equipment", (), ""),
    Skill("s8", "C++", (), ""),
    Skill("s9", "design principles", ("principles of design",),
          "Elements used in design such as unity, scale, proportion, balance, symmetry, space, form, texture, colour."),
]
STOPWORDS = set("the a an and or of to in for such as on by with that do not be are is".split())


def user_prompt(skill: Skill, n: int, avoid: tuple[str, ...] = ()) -> str:
    return build_messages(skill, n, avoid=avoid)[1]["content"]


# ---- rate limiter ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "seconds,text",
    [(360, "6m0s"), (1, "1s"), (0.12, "120ms"), (8.64, "8.64s"), (3600, "1h0m0s"), (61.5, "1m1.5s"), (0, "0s"),
     (0.0001, "1ms")],
)
def test_format_duration_matches_openai_header_style(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_token_bucket_bursts_capacity_then_refills_at_limit_per_minute() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, tpm=0, clock=clock)
    admitted = sum(limiter.admit("k", 10).allowed for _ in range(100))
    assert admitted == 60  # a fresh key may use a full minute's allowance at once
    rejected = limiter.admit("k", 10)
    assert not rejected.allowed and rejected.limited_by == "requests"
    assert rejected.retry_after == pytest.approx(1.0)  # 60 rpm = one request per second
    clock.now += 0.5
    assert not limiter.admit("k", 10).allowed  # rejected, not queued: half a request is not a request
    clock.now += 0.5
    assert limiter.admit("k", 10).allowed
    clock.now += 30.0
    assert sum(limiter.admit("k", 10).allowed for _ in range(100)) == 30


def test_both_buckets_must_cover_a_request_and_only_admitted_requests_are_charged() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=100, tpm=1000, clock=clock)
    assert limiter.admit("k", 900).allowed
    denied = limiter.admit("k", 200)
    assert not denied.allowed and denied.limited_by == "tokens"
    assert denied.retry_after == pytest.approx(100 / (1000 / 60))
    headers = limiter.admit("k", 100).headers  # the rejection charged nothing: 100 tokens still fit
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-remaining-requests"] == "98"
    assert headers["x-ratelimit-limit-requests"] == "100" and headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-reset-tokens"] == "1m0s"
    assert headers["x-ratelimit-reset-requests"] == "1.2s"


def test_limits_are_per_key_and_a_request_larger_than_the_limit_never_fits() -> None:
    limiter = RateLimiter(rpm=2, tpm=500, clock=FakeClock())
    assert limiter.admit("a", 10).allowed and limiter.admit("a", 10).allowed
    assert not limiter.admit("a", 10).allowed
    assert limiter.admit("b", 10).allowed
    too_large = limiter.admit("c", 501)
    assert not too_large.allowed and too_large.limited_by == "tokens" and math.isinf(too_large.retry_after)


def test_unlimited_limiter_admits_everything_and_sends_no_headers() -> None:
    limiter = RateLimiter(0, 0)
    assert all(limiter.admit("k", 10**9).allowed for _ in range(1000))
    assert limiter.headers("k") == {}


# ---- faults and config ---------------------------------------------------------------


def test_fault_draws_follow_rates_and_repeat_for_a_seed() -> None:
    rates = {FaultKind.SERVER_ERROR: 0.2, FaultKind.DROP: 0.05, FaultKind.EMPTY: 0.1}
    first = FaultInjector(rates, seed=3)
    second = FaultInjector(rates, seed=3)
    seq_a = [first.draw() for _ in range(20_000)]
    seq_b = [second.draw() for _ in range(20_000)]
    assert seq_a == seq_b
    other = FaultInjector(rates, seed=4)
    assert [other.draw() for _ in range(200)] != seq_a[:200]
    for kind, rate in rates.items():
        share = seq_a.count(kind) / len(seq_a)
        assert abs(share - rate) < 4 * math.sqrt(rate * (1 - rate) / len(seq_a))
    assert seq_a.count(None) / len(seq_a) == pytest.approx(0.65, abs=0.02)


def test_no_configured_fault_means_none() -> None:
    assert all(FaultInjector({}, 0).draw() is None for _ in range(100))


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_wrong_count_never_returns_the_requested_count(n: int) -> None:
    rng = random.Random(0)
    assert all(wrong_count(n, rng) not in (n,) and wrong_count(n, rng) >= 0 for _ in range(200))


def test_corrupted_json_never_parses_even_after_stripping_code_fences() -> None:
    content = render_sentences(["You will manage musical staff.", "Experience in rigging is a plus."], None)
    rng = random.Random(1)
    for _ in range(300):
        broken = corrupt_json(content, rng)
        for text in (broken, broken.strip("`").removeprefix("json")):
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)


def test_latency_specs_parse_and_sample_their_distribution() -> None:
    rng = random.Random(0)
    assert LatencySpec.parse("fixed:0.5").sample(rng) == 0.5
    uniform = [LatencySpec.parse("uniform:0.1,0.9").sample(rng) for _ in range(5000)]
    assert min(uniform) >= 0.1 and max(uniform) <= 0.9 and statistics.mean(uniform) == pytest.approx(0.5, abs=0.02)
    lognormal = [LatencySpec.parse("lognormal:-1,0.5").sample(rng) for _ in range(5000)]
    assert statistics.median(lognormal) == pytest.approx(math.exp(-1), rel=0.05)
    assert statistics.mean(lognormal) > statistics.median(lognormal)  # the right tail
    for bad in ("fixed", "uniform:0.9,0.1", "gauss:1,2", "fixed:x", "fixed:-1"):
        with pytest.raises(ValueError):
            SimulatorConfig(latency=bad)


def test_fault_rates_parse_and_must_be_probabilities_summing_to_at_most_one() -> None:
    assert parse_fault_rates("500=0.05, hang=0.01,drop=0.01") == {
        FaultKind.SERVER_ERROR: 0.05, FaultKind.HANG: 0.01, FaultKind.DROP: 0.01}
    for bad in ("500=0.6,502=0.6", "bogus=0.1", "500", "500=2"):
        with pytest.raises(ValueError):
            SimulatorConfig(fault_rates=bad)


def test_config_round_trips_through_the_cli_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.delenv("SKILLGEN_SIM_REQUIRE_KEY", raising=False)

    config = SimulatorConfig(port=1234, rpm=500, tpm=90_000, latency="lognormal:-0.5,0.3",
                             fault_rates="500=0.1,malformed=0.05", seed=9, hang_seconds=7.5,
                             stats_file=tmp_path / "s.json", models=("m1", "m2"), context_window=9000,
                             assumed_max_tokens=321, shutdown_timeout=0.25)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(config.to_cli_args())
    args.require_key = None
    assert cli.config_from_args(args) == config
    assert "--require-key" not in config.to_cli_args()  # the key never goes on a command line


# ---- content -------------------------------------------------------------------------


def test_parse_prompt_reads_the_skillgen_prompt_fields() -> None:
    skill = SKILLS[0]
    prompt = parse_prompt(user_prompt(skill, 7, avoid=("You will manage musical staff.",)))
    assert prompt is not None
    assert prompt.n == 7
    assert prompt.label == skill.label
    assert prompt.description == skill.description
    assert prompt.alt_labels == skill.alt_labels
    assert prompt.avoid == {"you will manage musical staff."}


def test_parse_prompt_is_tolerant_and_rejects_prompts_without_a_skill() -> None:
    text = "please write 3 sentences\n  skill :  plan pyrotechnical effects \nDESCRIPTION: (none given)\nalternative labels: (none)"
    prompt = parse_prompt(text)
    assert prompt is not None and prompt.n == 3 and prompt.label == "plan pyrotechnical effects"
    assert prompt.description == "" and prompt.alt_labels == ()
    assert parse_prompt("Skill: welding").n == 10  # no count given: a sensible default
    assert parse_prompt("What is the capital of France?") is None
    assert parse_prompt("Skill: (none)") is None


@pytest.mark.parametrize("skill", SKILLS, ids=lambda s: s.label)
@pytest.mark.parametrize("n", [1, 5, 12])
def test_sentences_are_exactly_n_distinct_short_and_grounded(skill: Skill, n: int) -> None:
    writer = writer_for(user_prompt(skill, n))
    assert writer is not None
    sentences = writer.sentences(random.Random(n), writer.prompt.n)
    assert len(sentences) == n and len({s.lower() for s in sentences}) == n
    anchors = [skill.label.split(" (")[0].lower(), *(a.lower() for a in skill.alt_labels)]
    desc_words = {w for w in re.findall(r"[a-z]+", skill.description.lower()) if w not in STOPWORDS and len(w) > 3}
    for sentence in sentences:
        assert len(sentence.split()) <= 40 and sentence[0].isupper() and sentence.endswith(".")
        lower = sentence.lower()
        from_description = len(desc_words & set(re.findall(r"[a-z]+", lower))) >= 2
        from_label_words = any(w in lower for w in skill.label.lower().split() if len(w) > 3)
        assert any(a in lower for a in anchors) or from_description or from_label_words, sentence


def test_sentences_mix_explicit_and_implicit_mentions() -> None:
    for skill in SKILLS[:6]:
        writer = writer_for(user_prompt(skill, 12))
        assert writer is not None
        sentences = writer.sentences(random.Random(0), 12)
        label = skill.label.split(" (")[0].lower()
        explicit = [s for s in sentences if label in s.lower()]
        implicit = [s for s in sentences if label not in s.lower()]
        assert explicit and implicit, (skill.label, sentences)


def test_implicit_mentions_use_the_descriptions_verb_phrases() -> None:
    writer = writer_for(user_prompt(SKILLS[0], 30))
    assert writer is not None
    sentences = writer.sentences(random.Random(5), 30)
    assert any("assign and manage staff tasks" in s for s in sentences)
    assert any("managing musical staff" in s for s in sentences)  # the gerund form of the label


def test_sentences_avoid_the_prompts_list_and_vary_with_the_rng() -> None:
    skill = SKILLS[1]
    first = SkillWriter(parse_prompt(user_prompt(skill, 10))).sentences(random.Random(1), 10)  # type: ignore[arg-type]
    again = SkillWriter(parse_prompt(user_prompt(skill, 10, avoid=tuple(first)))).sentences(random.Random(1), 10)  # type: ignore[arg-type]
    assert not {s.lower() for s in first} & {s.lower() for s in again}
    other_seed = SkillWriter(parse_prompt(user_prompt(skill, 10))).sentences(random.Random(2), 10)  # type: ignore[arg-type]
    assert other_seed != first


def test_large_n_for_a_tiny_skill_still_gives_n_distinct_sentences() -> None:
    writer = writer_for(user_prompt(SKILLS[7], 150))
    assert writer is not None
    sentences = writer.sentences(random.Random(0), 150)
    assert len(set(sentences)) == 150


def test_sentence_lengths_vary() -> None:
    lengths = []
    for seed in range(20):
        writer = writer_for(user_prompt(SKILLS[seed % len(SKILLS)], 10))
        assert writer is not None
        lengths += [len(s.split()) for s in writer.sentences(random.Random(seed), 10)]
    assert statistics.pstdev(lengths) > 2.5 and max(lengths) - min(lengths) >= 10


@pytest.mark.parametrize(
    "verb,form",
    [("manage", "managing"), ("plan", "planning"), ("label", "labelling"), ("be", "being"), ("tie", "tying"),
     ("test", "testing"), ("edit", "editing"), ("set-up", "setting-up"), ("transfer", "transferring"),
     ("install", "installing"), ("see", "seeing")],
)
def test_gerunds(verb: str, form: str) -> None:
    assert gerund(verb) == form


ESCO_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "esco" / "skills_en.csv"


def test_every_sampled_esco_skill_gets_exactly_n_grounded_sentences() -> None:
    """Over real ESCO rows (the shared CSV when present, else the inline skills)."""
    skills = SKILLS
    if ESCO_CSV.exists():
        from skillgen.common.taxonomy import iter_skills, load_skills

        all_skills = list(iter_skills(load_skills(ESCO_CSV)))
        skills = random.Random(0).sample(all_skills, 300)
    for i, skill in enumerate(skills):
        writer = writer_for(user_prompt(skill, 10))
        assert writer is not None
        sentences = writer.sentences(random.Random(i), 10)
        assert len(set(sentences)) == 10, skill.label
        assert all(len(s.split()) <= 40 for s in sentences), skill.label


# ---- structured output -----------------------------------------------------------------


def test_schema_instance_conforms_to_a_nested_schema_with_refs() -> None:
    schema = {
        "type": "object",
        "properties": {
            "meta": {"$ref": "#/$defs/meta"},
            "items": {"type": "array", "items": {"type": "string"}},
            "count": {"type": "integer", "minimum": 1},
            "ok": {"type": "boolean"},
            "level": {"enum": ["junior", "senior"]},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        },
        "$defs": {"meta": {"type": "object", "properties": {"source": {"type": "string"}}}},
    }
    value = instance_for(schema, ["a", "b"])
    assert value == {"meta": {"source": "a"}, "items": ["a", "b"], "count": 1, "ok": False, "level": "junior",
                     "maybe": None}


def test_sentences_go_into_the_first_string_array_of_the_schema() -> None:
    schema = {"type": "object", "properties": {"sentences": {"type": "array", "items": {"type": "string"}}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert json.loads(render_sentences(["one.", "two."], fmt)) == {"sentences": ["one.", "two."]}
    assert json.loads(render_sentences(["one."], {"type": "json_object"})) == {"sentences": ["one."]}
