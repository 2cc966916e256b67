"""The run report: one Markdown page with PNG plots, written into the run dir.

It answers what a user asks after a bulk run: did training help (scores vs
the zero-shot start model), how did training go (loss, validation RP@5), did
every skill get its sentences (per-skill counts, failures), and what did it
cost (estimate vs actual).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: cluster heads and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

METRICS = ("RP@1", "RP@5", "RP@10", "MRR")


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def training_curve(history: list[dict[str, Any]]) -> dict[str, list]:
    """The data behind the training plot: every logged step's loss and every validation point.

    ``history`` is the run's log as kept in its checkpoints, so a resumed run still shows
    the steps before the crash (a step redone after a resume keeps its latest value).
    """
    loss = {h["step"]: h["loss"] for h in history if h.get("loss") is not None}
    val = {h["step"]: h["val_rp5"] for h in history if h.get("val_rp5") is not None}
    return {
        "loss_steps": sorted(loss), "loss": [loss[s] for s in sorted(loss)],
        "val_steps": sorted(val), "val_rp5": [val[s] for s in sorted(val)],
    }


def plot_training(history: list[dict[str, Any]], path: Path) -> str | None:
    curve = training_curve(history)
    if not curve["loss_steps"] and not curve["val_steps"]:
        return None
    path.with_suffix(".json").write_text(json.dumps(curve, indent=1))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    handles = []
    if curve["loss_steps"]:
        handles += ax.plot(curve["loss_steps"], curve["loss"], ".-", color="tab:blue", lw=1, ms=3, label="training loss (logged steps)")
        ax.set_ylabel("loss")
    ax.set_xlabel("step")
    if curve["val_steps"]:
        ax2 = ax.twinx()
        handles += ax2.plot(curve["val_steps"], curve["val_rp5"], "o-", color="tab:orange", label="validation RP@5")
        ax2.set_ylabel("validation RP@5 (%)")
        lo, hi = min(curve["val_rp5"]), max(curve["val_rp5"])
        ax2.set_ylim(lo - max(1.0, 0.2 * (hi - lo)), hi + max(1.0, 0.2 * (hi - lo)))
    ax.set_title(f"training: {len(curve['loss_steps'])} logged steps, {len(curve['val_steps'])} validations")
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    return _save(fig, path)


def _ci_err(report: dict[str, Any]) -> list[list[float]] | None:
    """Asymmetric error bars (95% bootstrap interval) for :data:`METRICS`, or None without intervals."""
    ci = report.get("ci95")
    if not ci or not all(m in ci for m in METRICS):
        return None
    return [[report[m] - ci[m][0] for m in METRICS], [ci[m][1] - report[m] for m in METRICS]]


def plot_scores(results: dict[str, Any], baseline: dict[str, Any] | None, path: Path) -> str:
    sets = list(results)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.5), squeeze=False)
    for ax, name in zip(axes[0], sets):
        xs = range(len(METRICS))
        width = 0.38
        if baseline and name in baseline:
            ax.bar([x - width / 2 for x in xs], [baseline[name][m] for m in METRICS], width, label="zero-shot",
                   yerr=_ci_err(baseline[name]), capsize=3)
        ax.bar([x + width / 2 for x in xs], [results[name][m] for m in METRICS], width, label="trained",
               yerr=_ci_err(results[name]), capsize=3)
        ax.set_xticks(list(xs), METRICS)
        ax.set_title(f"{name.upper()} (n={results[name]['n']})")
        ax.set_ylabel("%")
        ax.legend()
    return _save(fig, path)


def plot_sentences(rows: pl.DataFrame, failures: pl.DataFrame, path: Path) -> str | None:
    if rows.is_empty():
        return None
    per_skill = rows.group_by("skill_id").len()["len"].to_list()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(per_skill, bins=range(0, max(per_skill) + 2), color="tab:green")
    ax.set_xlabel("sentences per skill")
    ax.set_ylabel("skills")
    ax.set_title(f"{rows.height} sentences for {len(per_skill)} skills; {failures.height} failure records")
    return _save(fig, path)


def plot_cost(estimate: dict[str, Any], summary: dict[str, Any], path: Path) -> str | None:
    est_tokens = estimate.get("prompt_tokens", 0) + estimate.get("completion_tokens", 0)
    act_tokens = summary.get("prompt_tokens", 0) + summary.get("completion_tokens", 0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(7, 3.2))
    a1.bar(["estimate", "actual"], [est_tokens, act_tokens], color=["tab:gray", "tab:blue"])
    a1.set_title("tokens")
    a2.bar(["estimate", "actual"], [estimate.get("cost_usd", 0.0), summary.get("cost_usd", 0.0)], color=["tab:gray", "tab:blue"])
    a2.set_title("cost (USD)")
    return _save(fig, path)


def _table(results: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    lines = ["| set | n | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for name, r in results.items():
        cells = []
        for m in METRICS:
            cell = f"{r[m]:.1f}"
            ci = r.get("ci95", {}).get(m)
            if ci:
                cell += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
            if baseline and name in baseline:
                cell += f" ({r[m] - baseline[name][m]:+.1f})"
            cells.append(cell)
        lines.append(f"| {name.upper()} | {r['n']} | " + " | ".join(cells) + " |")
        if baseline and name in baseline:
            b = baseline[name]
            lines.append(f"| {name.upper()} zero-shot | {b['n']} | " + " | ".join(f"{b[m]:.1f}" for m in METRICS) + " |")
    return lines


def generation_totals(log_path) -> tuple[dict[str, Any], dict[str, Any]]:
    """First invocation's estimate, and actual tokens/cost summed over every (resumed) invocation."""
    import json

    if not log_path.exists():
        return {}, {}
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    estimate = records[0]["estimate"]
    actual = {
        key: sum(r["summary"][key] for r in records)
        for key in ("prompt_tokens", "completion_tokens", "requests", "retries", "rate_limited")
    }
    actual["cost_usd"] = records[-1]["summary"]["total_cost_usd"]
    return estimate, actual


def quality_section(generation_dir, folder: Path) -> list[str]:
    """The generation run's data-quality report (:mod:`skillgen.quality`) with its two plots."""
    from skillgen import RunDir, plot_quality, quality_report

    report = quality_report(generation_dir)
    return report.markdown(plot_quality(RunDir.read_only(generation_dir).rows(), folder, prefix="report_quality"))


def write_report(config, outcome: dict[str, Any]):
    """Write ``<run_dir>/report.md`` and its PNGs (rendered locally, uploaded when the run dir is a URI)."""
    from skillgen.common import resolve, staged_locally

    run_dir = resolve(config.run_dir)
    with staged_locally(run_dir) as folder:
        _render(config, outcome, run_dir, folder)
    return run_dir / "report.md"


def _render(config, outcome: dict[str, Any], run_dir, folder: Path) -> None:
    from skillgen import RunDir

    est, summ = generation_totals(run_dir / "generation_runs.jsonl")
    training = outcome.get("training", {})
    ev = outcome.get("evaluation", {})
    results, baseline = ev.get("results", {}), ev.get("baseline")

    generation = RunDir.read_only(config.generation_dir)
    rows = generation.rows()
    failures = generation.failures()
    images = {
        "scores": plot_scores(results, baseline, folder / "report_scores.png") if results else None,
        "training": plot_training(training.get("history", []), folder / "report_training.png"),
        "sentences": plot_sentences(rows, failures, folder / "report_sentences.png"),
        "cost": plot_cost(est, summ, folder / "report_cost.png") if est or summ else None,
    }
    lines = [f"# Run report: `{run_dir}`", ""]
    lines += [f"## Skill extraction ({config.evaluation.split} split; 95% bootstrap interval in square brackets, change vs zero-shot in round ones)", ""]
    lines += _table(results, baseline) + [""]
    if images["scores"]:
        lines += [f"![scores]({images['scores']})", ""]
    lines += ["## Training", ""]
    for key in ("steps", "wall_s", "best_step", "best_val_rp5", "samples_per_s", "mfu", "phase_s"):
        if key in training:
            lines.append(f"- {key}: {training[key]}")
    if images["training"]:
        lines += ["", f"![training]({images['training']})"]
    lines += ["", "## Generation", ""]
    lines.append(f"- sentences: {rows.height} for {rows['skill_id'].n_unique() if rows.height else 0} skills; failure records: {failures.height}")
    if failures.height:
        by_class = failures.group_by("error_class").len().sort("len", descending=True)
        lines.append("- failures by class: " + ", ".join(f"{c} {n}" for c, n in by_class.iter_rows()))
    if images["sentences"]:
        lines += ["", f"![sentences]({images['sentences']})"]
    lines += ["", "## Data quality (`skillgen report`)", ""] + quality_section(config.generation_dir, folder)
    lines += ["", "## Tokens and cost", "", "| | prompt tokens | completion tokens | cost USD |", "|---|---|---|---|"]
    lines.append(f"| estimate | {est.get('prompt_tokens', '-')} | {est.get('completion_tokens', '-')} | {est.get('cost_usd', '-')} |")
    lines.append(f"| actual | {summ.get('prompt_tokens', '-')} | {summ.get('completion_tokens', '-')} | {summ.get('cost_usd', '-')} |")
    if images["cost"]:
        lines += ["", f"![cost]({images['cost']})"]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
