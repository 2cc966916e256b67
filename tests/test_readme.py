"""The README's Quickstart is the contract with users; CI must run exactly its test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quickstart_has_exactly_two_commands():
    commands = quickstart_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands)


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = quickstart_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_every_file_with_slow_tests_is_run_by_ci_or_listed_as_not_run():
    """A test left out of the default run is either run by CI after it or listed in the README's paragraph of
    slow tests CI does not run, so no slow test is silently never run."""
    readme = (ROOT / "README.md").read_text()
    not_run = next(p for p in readme.split("\n\n") if p.startswith("CI does not run these slow ones"))
    ci = (ROOT / ".ci" / "run").read_text()
    marked = re.compile(r"pytest\.mark\.slow|marks=pytest\.mark\.slow")
    files = sorted(p.name for p in (ROOT / "tests").glob("test_*.py") if marked.search(p.read_text()))
    assert len(files) > 10, files  # the scan finds the slow tests
    assert [f for f in files if f"tests/{f}" not in ci and f"tests/{f}" not in not_run] == []
