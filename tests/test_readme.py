"""The README's Quickstart is the contract with users; CI must run exactly its test command. The docs
(README.md, tests/README.md, BENCHMARKS.md) link to each other by section, so every relative link must
land on a file and a heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "tests/README.md", "BENCHMARKS.md")


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
    """A test left out of the default run is either run by CI after it or listed in tests/README.md's
    paragraph of slow tests CI does not run, so no slow test is silently never run."""
    tests_readme = (ROOT / "tests" / "README.md").read_text()
    not_run = next(p for p in tests_readme.split("\n\n") if p.startswith("CI does not run these slow ones"))
    ci = (ROOT / ".ci" / "run").read_text()
    marked = re.compile(r"pytest\.mark\.slow|marks=pytest\.mark\.slow")
    files = sorted(p.name for p in (ROOT / "tests").glob("test_*.py") if marked.search(p.read_text()))
    assert len(files) > 10, files  # the scan finds the slow tests
    assert [f for f in files if f"tests/{f}" not in ci and f"tests/{f}" not in not_run] == []


def test_readme_stays_a_manual():
    """Measurements live in BENCHMARKS.md and test internals in tests/README.md; the README is read whole."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered -1, -2; headings inside fenced code do not count."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for block_index, block in enumerate(re.split(r"^```.*$", text, flags=re.M)):
        if block_index % 2:
            continue
        for title in re.findall(r"^#{1,6} +(.+?) *#*$", block, flags=re.M):
            slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(text: str) -> list[str]:
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    targets = re.findall(r"\]\(([^)\s]+)\)", prose)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_heading_anchors_follow_github():
    text = "# A b\n## Speed of `skillgen report` on 140,000 sentences\n```\n# not a heading\n```\n## A b\n"
    assert heading_anchors(text) == {"a-b", "speed-of-skillgen-report-on-140000-sentences", "a-b-1"}


def test_every_relative_link_in_the_docs_resolves():
    broken = []
    for doc in DOCS:
        source = ROOT / doc
        for target in relative_links(source.read_text()):
            path, _, anchor = target.partition("#")
            file = (source.parent / path).resolve() if path else source
            if not file.exists():
                broken.append(f"{doc}: {target} (no file)")
            elif anchor and file.suffix == ".md" and anchor not in heading_anchors(file.read_text()):
                broken.append(f"{doc}: {target} (no heading)")
    assert broken == []
