"""What a real model's raw answers did, by failure mode, and fixtures cut from them.

    .venv/bin/python benchmarks/real_answers.py modes benchmarks/out/llama300 --out benchmarks/results/llamacpp_300_modes.json
    .venv/bin/python benchmarks/real_answers.py fixture benchmarks/out/llama300 KEY NAME

``modes`` reads the recording proxy's exchanges (``<dir>/exchanges.jsonl``) and the generation run dir
(``<dir>/generation``) and counts the answers that showed each failure mode of issue 21: not quite JSON,
fewer sentences than asked, duplicates, a sentence that only repeats the label, a refusal, an answer cut
by ``max_tokens`` (and those the validator learned from SmolLM2: fragments, echoes of the prompt,
unfilled placeholders), and the server's slowness and (absent) rate-limit headers; each with example request
keys. ``fixture`` copies every exchange of one skill (its request key) with the skill's ESCO fields into
``tests/fixtures/smollm2/NAME.json`` for ``tests/test_real_answers.py``. Modes are judged by the same
validator the run used (:func:`skillgen.llm.validate.validate_response`), so "fewer" means fewer *usable*
sentences, and the raw list length is kept beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# a refusal speaks in the first person ("as an AI" alone is not one: a sentence may mention an AI assistant role)
# ("I can't wait to hear more" is SmolLM2 being enthusiastic, not refusing: the verb after "can't" decides)
REFUSAL = re.compile(r"\b(I'?m sorry|I am sorry|I (?:cannot|can'?t|won'?t) (?:help|assist|provide|write|create|"
                     r"generate|comply|do that|fulfil)|I'?m unable|I am unable|cannot assist)\b", re.I)
MODES = ("not_quite_json", "fewer_than_asked", "duplicates", "label_only", "refusal", "cut_by_max_tokens",
         "fragment", "prompt_echo", "placeholder")
_DROPPED = {"duplicate": "duplicates", "label-only": "label_only", "too-short": "fragment", "prompt-echo": "prompt_echo",
            "placeholder": "placeholder"}  # the validator's reasons -> modes


def run_skills(run_dir: Path) -> dict[str, Any]:
    """Request key -> Skill for the run dir's configuration (its skill slice, its keys)."""
    from skillgen.common.taxonomy import iter_skills, load_skills, select
    from skillgen.config import make_config
    from skillgen.rundir.runstate import request_key

    config = make_config(json.loads((run_dir / "run.json").read_text())["config"], source="run.json")
    df = select(load_skills(config.esco), limit=config.limit, sample=config.sample, seed=config.sample_seed,
                types=config.skill_types, labels=config.labels)
    return {request_key(config, s.skill_id): s for s in iter_skills(df)}


def answer_modes(exchange: dict[str, Any], label: str) -> tuple[list[str], dict[str, Any]]:
    """The failure modes one recorded answer shows, and what the validator made of it."""
    from skillgen.llm.validate import extract_items, validate_response

    body = exchange["response"]
    if exchange["status"] != 200 or not isinstance(body, dict):
        return ["http_error"], {"status": exchange["status"]}
    choice = body["choices"][0]
    content, finish = choice["message"].get("content"), choice.get("finish_reason")
    asked = _asked(exchange["request"])
    items, _ = extract_items(content)
    v = validate_response(content, asked, label=label)
    modes = []
    if finish != "length" and not _strict_json(content):
        modes.append("not_quite_json")  # strict JSON: the validator itself now reads raw newlines in strings
    if finish == "length":
        modes.append("cut_by_max_tokens")
    if len(v.sentences) < asked:
        modes.append("fewer_than_asked")
    modes += [mode for reason, mode in _DROPPED.items() if v.dropped.get(reason)]
    if content and REFUSAL.search(content):
        modes.append("refusal")
    return modes, {"asked": asked, "raw_items": len(items), "kept": len(v.sentences), "finish_reason": finish,
                   "problem": v.describe()}


def _strict_json(content: str | None) -> bool:
    try:
        json.loads(content or "")
        return True
    except ValueError:
        return False


def _asked(request: dict[str, Any]) -> int:
    match = re.search(r"^Write (\d+) distinct sentences", request["messages"][-1]["content"], re.M)
    return int(match.group(1)) if match else 0


def modes_report(base: Path) -> dict[str, Any]:
    from helpers.llamacpp import read_exchanges

    exchanges = read_exchanges(base / "exchanges.jsonl")
    skills = run_skills(base / "generation")
    counts: dict[str, int] = defaultdict(int)
    examples: dict[str, list[str]] = defaultdict(list)
    for e in exchanges:
        key = (e.get("request_key") or "").split(":")[0]
        label = skills[key].label if key in skills else ""
        modes, _ = answer_modes(e, label)
        for mode in modes:
            counts[mode] += 1
            if len(examples[mode]) < 5 and e.get("request_key") not in examples[mode]:
                examples[mode].append(e.get("request_key"))
    elapsed = sorted(e["elapsed_s"] for e in exchanges)
    return {
        "exchanges": len(exchanges),
        "answers_by_mode": {m: counts.get(m, 0) for m in (*MODES, "http_error")},
        "never_produced": [m for m in MODES if not counts.get(m)],
        "examples": dict(examples),
        "elapsed_s": {"median": statistics.median(elapsed), "p95": elapsed[int(0.95 * (len(elapsed) - 1))],
                      "max": elapsed[-1]} if elapsed else {},
        "answers_with_rate_limit_headers": sum(1 for e in exchanges if e.get("limit_headers")),
    }


def write_fixture(base: Path, key: str, name: str) -> Path:
    from helpers.llamacpp import read_exchanges

    skill = run_skills(base / "generation")[key]
    mine = [e for e in read_exchanges(base / "exchanges.jsonl") if (e.get("request_key") or "").split(":")[0] == key]
    if not mine:
        raise SystemExit(f"no exchange with request key {key}")
    fixture = {
        "source": f"{base / 'exchanges.jsonl'}: SmolLM2-135M-Instruct on llama-cpp-python's server, recorded by "
                  "tests/helpers/llamacpp.py's RecordingProxy during benchmarks/bench_llamacpp.py",
        "skill": {"skill_id": skill.skill_id, "label": skill.label, "description": skill.description,
                  "alt_labels": list(skill.alt_labels), "skill_type": skill.skill_type},
        "exchanges": [{k: e[k] for k in ("request_key", "elapsed_s", "status", "limit_headers", "request", "response")}
                      for e in mine],
    }
    out = ROOT / "tests" / "fixtures" / "smollm2" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("modes", allow_abbrev=False)
    m.add_argument("dir", type=Path, help="the benchmark's output dir (exchanges.jsonl, generation/)")
    m.add_argument("--out", type=Path, default=None)
    f = sub.add_parser("fixture", allow_abbrev=False)
    f.add_argument("dir", type=Path)
    f.add_argument("key", help="a request key (the part before ':')")
    f.add_argument("name", help="fixture file name, without .json")
    args = parser.parse_args()
    if args.cmd == "modes":
        report = modes_report(args.dir)
        text = json.dumps(report, indent=2)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        print(text)
    else:
        print(write_fixture(args.dir, args.key, args.name))


if __name__ == "__main__":
    main()
