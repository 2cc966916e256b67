"""``QualityReport``: what a generation run's sentences are worth, before training on them.

Read from the run dir's Parquet shards and failure records alone (local or ``s3://``,
through :mod:`skillgen.common.storage`); ``run.json`` only supplies ``-n`` and the taxonomy
path for the skill types. :meth:`QualityReport.format` is the terminal view,
:meth:`QualityReport.markdown` the section the pipeline's report.md embeds, and
:func:`skillgen.quality.plots.plot_quality` its figures.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from skillgen.quality import metrics

__all__ = ["QualityReport", "quality_report"]


@dataclass
class QualityReport:
    run_dir: str
    n_sentences: int | None  # -n of the run (None: unknown)
    sentences: int
    skills: int  # skills with at least one sentence
    skills_failed: int  # skills with an active failure record
    per_skill: dict[str, Any]
    duplicates: dict[str, int]  # counts of sentences
    near_duplicates_within_skill: int
    label_verbatim: int  # sentences containing the skill's label as whole words
    label_only: int  # sentences that are the label and nothing else
    placeholder: int  # sentences with an unfilled [slot]
    lengths: dict[str, Any]
    diversity: dict[str, Any]
    failures: dict[str, Any]
    samples: dict[str, list[dict]] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def share(self, count: int) -> float:
        return round(100.0 * count / self.sentences, 2) if self.sentences else 0.0

    def headline(self) -> dict[str, float]:
        """The numbers to compare two runs by (percent of sentences unless named otherwise)."""
        return {
            "sentences": self.sentences,
            "skills": self.skills,
            "skills_short_of_n": self.per_skill.get("skills_short_of_n", 0),
            "skills_failed": self.skills_failed,
            "duplicate_within_skill_%": self.share(self.duplicates["within_skill"]),
            "near_duplicate_within_skill_%": self.share(self.near_duplicates_within_skill),
            "duplicate_across_skills_%": self.share(self.duplicates["across_skills"]),
            "template_across_skills_%": self.share(self.duplicates["template_across_skills"]),
            "label_verbatim_%": self.share(self.label_verbatim),
            "label_only_%": self.share(self.label_only),
            "placeholder_%": self.share(self.placeholder),
            "mean_words": self.lengths.get("mean_words", 0.0),
            "distinct_1": self.diversity.get("distinct_1", 0.0),
            "distinct_2": self.diversity.get("distinct_2", 0.0),
            "distinct_3": self.diversity.get("distinct_3", 0.0),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "headline": self.headline()}

    def format(self) -> str:
        h = self.headline()
        lines = [f"quality of {self.run_dir} ({', '.join(self.models) or 'no rows'}; {self.seconds:.1f} s)"]
        lines += [f"  {k:32s} {v}" for k, v in h.items()]
        if self.failures["by_class"]:
            lines.append("  failures by class: " + ", ".join(f"{k} {v}" for k, v in self.failures["by_class"].items()))
        if self.failures["validation_problems"]:
            lines.append("  validation problems: " + ", ".join(f"{k} {v}" for k, v in self.failures["validation_problems"].items()))
        for skill_type, picks in self.samples.items():
            lines.append(f"  sample ({skill_type}):")
            lines += [f"    [{p['label']}] {p['sentence']}" for p in picks]
        return "\n".join(lines)

    def markdown(self, images: dict[str, str | None] | None = None) -> list[str]:
        """Lines of a report.md section (the caller adds the heading)."""
        lines = ["| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.headline().items()]
        lines += ["", f"Lengths (words): {self.lengths}", ""]
        if self.failures["by_class"]:
            lines.append("Failure records by class: " + ", ".join(f"{k} {v}" for k, v in self.failures["by_class"].items()))
        if self.failures["validation_problems"]:
            lines.append("; validation problems named: " + ", ".join(
                f"{k} {v}" for k, v in self.failures["validation_problems"].items()))
        for name, image in (images or {}).items():
            if image:
                lines += ["", f"![{name}]({image})"]
        for skill_type, picks in self.samples.items():
            lines += ["", f"Sample, {skill_type}:", ""]
            lines += [f"- *{p['label']}*: {p['sentence']}" for p in picks]
        return lines


def quality_report(run_dir: str | Path, n_sentences: int | None = None, samples_per_type: int = 3,
                   near_dup_threshold: float = metrics.NEAR_DUP_JACCARD) -> QualityReport:
    """Measure a run dir (a path or URI). ``n_sentences`` defaults to the run's own ``-n`` from run.json."""
    from skillgen.rundir.runstate import read_run_json
    from skillgen.rundir.sinks import read_failures, read_rows

    started = time.perf_counter()
    meta = read_run_json(run_dir) or {}
    config = meta.get("config", {})
    n = n_sentences if n_sentences is not None else config.get("n_sentences")
    rows = read_rows(run_dir)
    failures = read_failures(run_dir)
    keyed = metrics.with_keys(rows)
    report = QualityReport(
        run_dir=str(run_dir),
        n_sentences=n,
        sentences=rows.height,
        skills=rows["skill_id"].n_unique() if rows.height else 0,
        skills_failed=failures["skill_id"].n_unique() if failures.height else 0,
        per_skill=metrics.per_skill_counts(rows, n),
        duplicates=metrics.duplicates(keyed),
        near_duplicates_within_skill=metrics.near_duplicates_within_skill(keyed, near_dup_threshold),
        label_verbatim=int(keyed["has_label"].sum()) if rows.height else 0,
        label_only=int(keyed["label_only"].sum()) if rows.height else 0,
        placeholder=int(keyed["placeholder"].sum()) if rows.height else 0,
        lengths=metrics.lengths(keyed),
        diversity=metrics.distinct_ngrams(keyed),
        failures=metrics.failures_by_reason(failures),
        samples=metrics.samples_by_type(rows, _skill_types(config.get("esco")), samples_per_type),
        models=sorted(m for m in rows["model"].unique().to_list() if m) if rows.height else [],
    )
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _skill_types(esco: str | None) -> pl.DataFrame | None:
    """skill_id -> skill_type from the run's taxonomy (the bundled ESCO when it named none)."""
    from skillgen.common.errors import UserError
    from skillgen.common.taxonomy import load_skills

    try:
        return load_skills(esco).select("skill_id", "skill_type")
    except (UserError, OSError):
        return None  # the taxonomy file is not on this machine: samples are grouped as "unknown"
