"""One command-line surface and one public API across skillgen, skilltrain and the pipeline."""

from __future__ import annotations

import argparse

import pytest

import cluster.pipeline
import skillgen
import skilltrain
from skillgen.cli import COMMANDS as SKILLGEN_COMMANDS
from skillgen.cli import build_parser
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


def all_parsers() -> dict[str, argparse.ArgumentParser]:
    parsers = {"pipeline": cluster.pipeline.build_parser()}
    for prog, commands in (("skillgen", SKILLGEN_COMMANDS), ("skilltrain", SKILLTRAIN_COMMANDS)):
        top = build_parser(prog, "", commands)
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
