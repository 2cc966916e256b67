"""One command-line surface and one public API across skillgen, skilltrain and the pipeline."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cluster.pipeline
import skillgen
import skillgen.simulator.__main__ as simulator_main
import skilltrain
from skillgen.cli import COMMANDS as SKILLGEN_COMMANDS
from skillgen.common.argparsing import build_parser
from skilltrain.cli import COMMANDS as SKILLTRAIN_COMMANDS

# The things more than one command names, and the one spelling each has everywhere.
# Keyed by argparse dest; an option whose dest is listed must show exactly this spelling.
CANONICAL = {
    "ray_address": "--address",
    "address": "--address",
    "esco": "--esco",
    "benchmark_dir": "--benchmark-dir",
    "json": "--json",
    "run_dir": "--run-dir",
    "max_seq_length": "--max-seq-length",
    "config": "--config",
}


def all_parsers(with_top_level: bool = False) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser; with ``with_top_level`` also ``skillgen``/``skilltrain`` themselves and the simulator's."""
    parsers = {"pipeline": cluster.pipeline.build_parser()}
    if with_top_level:
        parsers["python -m skillgen.simulator"] = simulator_main.build_parser()
    for prog, commands in (("skillgen", SKILLGEN_COMMANDS), ("skilltrain", SKILLTRAIN_COMMANDS)):
        top = build_parser(prog, "", commands)
        if with_top_level:
            parsers[prog] = top
        sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        parsers.update({f"{prog} {name}": p for name, p in sub.choices.items()})
    return parsers


def visible_long_options(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """dest -> the long option strings a user sees in --help (hidden aliases left out)."""
    seen: dict[str, set[str]] = {}
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        longs = {o for o in action.option_strings if o.startswith("--")}
        seen.setdefault(action.dest, set()).update(longs)
    return seen


def test_same_thing_same_spelling_in_every_cli():
    problems = []
    found: dict[str, set[str]] = {}
    for name, parser in all_parsers().items():
        for dest, options in visible_long_options(parser).items():
            if dest in CANONICAL:
                found.setdefault(CANONICAL[dest], set()).add(name)
                if CANONICAL[dest] not in options:
                    problems.append(f"{name}: {sorted(options)} for {dest}, expected {CANONICAL[dest]}")
    assert not problems, problems
    # the walk really covered the three CLIs for the shared names
    assert {"pipeline", "skillgen run", "skilltrain fit", "skilltrain extract"} <= found["--address"]
    assert {"pipeline", "skillgen run", "skilltrain eval", "skilltrain fit", "skilltrain extract"} <= found["--esco"]
    assert {"skillgen run", "skillgen estimate", "skillgen status", "skilltrain eval", "pipeline"} <= found["--json"]


def test_json_is_a_switch_everywhere():
    for name, parser in all_parsers().items():
        for action in parser._actions:
            if "--json" in action.option_strings:
                assert action.nargs == 0, f"{name}: --json takes a value; use --out for a file"


def test_old_spellings_still_parse_as_hidden_aliases():
    parsers = all_parsers()
    args = parsers["skilltrain fit"].parse_args(["--data", "d", "--out", "o", "--ray-address", "auto"])
    assert args.ray_address == "auto"
    args = parsers["skillgen run"].parse_args(["--ray-address", "auto"])
    assert args.ray_address == "auto"


def test_public_api_is_exported_lazily():
    for name in ("run_generation", "estimate", "GenerationConfig", "load_skills", "RunSummary", "status"):
        assert name in skillgen.__all__ and getattr(skillgen, name) is not None
    for name in ("SkillExtractor", "fit", "TrainConfig", "evaluate"):
        assert name in skilltrain.__all__ and getattr(skilltrain, name) is not None
    with pytest.raises(AttributeError):
        skilltrain.no_such_thing  # noqa: B018


def test_api_misuse_raises_value_error_not_the_cli_error(tiny_encoder_dir, esco_csv, tmp_path):
    from skillgen.common.errors import UserError
    from skilltrain import SkillExtractor

    extractor = SkillExtractor.from_pretrained(tiny_encoder_dir, taxonomy=esco_csv, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="top_k") as info:
        extractor.extract(["We need a welder."], top_k=0)
    assert not isinstance(info.value, UserError)


def test_no_parser_guesses_an_abbreviated_option():
    parsers = all_parsers(with_top_level=True)
    assert {"skillgen", "skillgen estimate", "skilltrain", "skilltrain fit", "python -m skillgen.simulator"} <= set(parsers)
    guessing = [name for name, parser in parsers.items() if parser.allow_abbrev]
    assert not guessing, f"prefix matching on (set allow_abbrev=False): {guessing}"


def test_abbreviated_option_is_an_error_not_a_guess():
    result = subprocess.run([sys.executable, "-m", "skillgen.cli", "estimate", "--limi", "5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unrecognized arguments: --limi 5" in result.stderr
    # the exact name still works (parsing only: no estimate is run)
    parsers = all_parsers()
    assert parsers["skillgen estimate"].parse_args(["--limit", "5"]).limit == 5
    with pytest.raises(SystemExit):
        parsers["skilltrain fit"].parse_args(["--data", "d", "--out", "o", "--work", "2"])


def test_every_help_line_names_at_most_one_default():
    problems = []
    for name, parser in all_parsers(with_top_level=True).items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                continue
            text = formatter._expand_help(action)
            if len(re.findall(r"\bdefault\b", text, flags=re.IGNORECASE)) > 1:
                problems.append(f"{name} {'/'.join(action.option_strings) or action.dest}: {text!r}")
    assert not problems, "\n".join(problems)


def test_fit_help_prints_each_default_once():
    parsers = all_parsers()
    text = parsers["skilltrain fit"].format_help()
    assert "(default: None)" not in text
    assert text.count("skilltrain-<out dir name>") == 1


def test_every_argument_parser_in_the_repo_is_built_without_prefix_matching():
    """Benchmarks and any future entry point too: each ``ArgumentParser(...)`` call passes ``allow_abbrev=False``."""
    root = Path(__file__).resolve().parents[1]
    calls = []
    for package in ("skillgen", "skilltrain", "cluster", "benchmarks"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "ArgumentParser":
                    ok = any(k.arg == "allow_abbrev" and isinstance(k.value, ast.Constant) and k.value.value is False
                             for k in node.keywords) or any(k.arg is None for k in node.keywords)  # **PARSER_OPTIONS
                    calls.append((f"{path.relative_to(root)}:{node.lineno}", ok))
    assert len(calls) >= 8, calls  # the walk found the benchmark scripts' parsers
    assert all(ok for _, ok in calls), [where for where, ok in calls if not ok]
