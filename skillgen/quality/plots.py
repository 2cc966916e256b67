"""Figures of a :class:`~skillgen.quality.data_report.QualityReport`: sentences per skill, sentence lengths."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: cluster heads and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from skillgen.quality import metrics  # noqa: E402

__all__ = ["plot_quality"]


def plot_quality(rows: pl.DataFrame, folder: Path, prefix: str = "quality") -> dict[str, str | None]:
    """``<prefix>_lengths.png`` (words per sentence, labelled vs not) and ``<prefix>_per_skill.png``; file names."""
    if rows.is_empty():
        return {"lengths": None, "per_skill": None}
    keyed = metrics.with_keys(rows)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    top = int(keyed["words"].quantile(0.99, "nearest")) + 2
    bins = range(0, max(top, 3))
    ax.hist([keyed.filter(pl.col("has_label"))["words"].to_list(), keyed.filter(~pl.col("has_label"))["words"].to_list()],
            bins=bins, stacked=True, label=["contains the label", "does not"], color=["tab:red", "tab:blue"])
    ax.set_xlabel("words per sentence")
    ax.set_ylabel("sentences")
    ax.legend(fontsize=8)
    ax.set_title(f"{rows.height} sentences; {100 * keyed['has_label'].mean():.0f}% contain the skill's label")
    lengths = _save(fig, folder / f"{prefix}_lengths.png")
    per_skill = rows.group_by("skill_id").len()["len"].to_list()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(per_skill, bins=range(0, max(per_skill) + 2), color="tab:green")
    ax.set_xlabel("sentences per skill")
    ax.set_ylabel("skills")
    return {"lengths": lengths, "per_skill": _save(fig, folder / f"{prefix}_per_skill.png")}


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
