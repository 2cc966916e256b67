"""What a user wants at the end of the main job: scores before -> after with 95% intervals, cost, time per
stage, paths. ``summary.json`` and ``--json`` are :meth:`PipelineSummary.to_dict`; the terminal shows
:meth:`PipelineSummary.format`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["METRICS", "PipelineSummary", "Score", "ScoreChange"]

METRICS = ("RP@5", "MRR")


@dataclass(frozen=True)
class Score:
    """One metric in percent, with its 95% bootstrap interval when the evaluation gave one."""

    value: float
    lo: float | None = None
    hi: float | None = None

    @classmethod
    def of(cls, report: dict[str, Any], metric: str) -> "Score | None":
        """From a ``results_json`` entry (None when the metric is absent)."""
        if metric not in report:
            return None
        ci = report.get("ci95", {}).get(metric)
        return cls(report[metric], *ci) if ci else cls(report[metric])

    def format(self) -> str:
        return f"{self.value:.1f}" if self.lo is None else f"{self.value:.1f} [{self.lo:.1f}, {self.hi:.1f}]"


@dataclass(frozen=True)
class ScoreChange:
    before: Score | None  # the zero-shot start model (None without a baseline)
    after: Score | None

    def format(self) -> str:
        shown = self.after.format() if self.after else "-"
        return f"{self.before.format()} -> {shown}" if self.before else shown


@dataclass(frozen=True)
class PipelineSummary:
    split: str
    scores: dict[str, dict[str, ScoreChange]]  # benchmark -> metric -> before/after
    cost_usd: float | None  # the generation run dir's total spend, by its ledger
    stage_seconds: dict[str, float]
    paths: dict[str, str] = field(default_factory=dict)  # run_dir, model, report

    @property
    def total_seconds(self) -> float:
        return round(sum(self.stage_seconds.values()), 1)

    @classmethod
    def of(cls, split: str, evaluation: dict[str, Any], cost_usd: float | None, stage_seconds: dict[str, float],
           paths: dict[str, str]) -> "PipelineSummary":
        baseline = evaluation.get("baseline") or {}
        scores = {name: {m: ScoreChange(Score.of(baseline.get(name, {}), m), Score.of(after, m)) for m in METRICS}
                  for name, after in evaluation["results"].items()}
        return cls(split, scores, cost_usd, dict(stage_seconds), dict(paths))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_seconds": self.total_seconds}

    def format(self) -> str:
        lines = [f"\npipeline finished in {self.total_seconds / 60:.1f} min "
                 f"({', '.join(f'{k} {v:.0f} s' for k, v in self.stage_seconds.items())})"]
        for name, metrics in self.scores.items():
            lines.append(f"  {name.upper():6s} {self.split}: "
                         + "; ".join(f"{metric} {change.format()}" for metric, change in metrics.items()))
        if self.cost_usd is not None:
            lines.append(f"  cost:     ${self.cost_usd:.4f}")
        lines += [f"  {key + ':':9s} {path}" for key, path in self.paths.items()]
        return "\n".join(lines)
