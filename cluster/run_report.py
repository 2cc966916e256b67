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


def training_curve(history: list[dict[str, Any]], losses: list[float | None] | None = None) -> dict[str, list]:
    """The data behind the training plot: every step's loss, its smoothed line, and every validation point.

    ``losses`` is the run's loss at every step (``losses[s - 1]`` for step ``s``, None where a checkpoint of
    an older version kept none); without it the logged steps of ``history`` stand in. ``history`` is the
    run's log as kept in its checkpoints, so a resumed run still shows the steps before the crash (a step
    redone after a resume keeps its latest value).
    """
    logged = {h["step"]: h["loss"] for h in history if h.get("loss") is not None}
    loss = {step: value for step, value in enumerate(losses or [], start=1) if value is not None}
    for step, value in logged.items():
        loss.setdefault(step, value)
    val = {h["step"]: h["val_rp5"] for h in history if h.get("val_rp5") is not None}
    steps = sorted(loss)
    return {
        "loss_steps": steps, "loss": [loss[s] for s in steps], "loss_smoothed": smooth([loss[s] for s in steps]),
        "val_steps": sorted(val), "val_rp5": [val[s] for s in sorted(val)],
    }


def smoothing_window(n: int) -> int:
    """Points in the smoothed loss's moving mean: 5% of the run (at least 3 from 9 points on), odd so it centres."""
    return max(3 if n >= 9 else 1, n // 20) | 1


def smooth(values: list[float], window: int | None = None) -> list[float]:
    """Centred moving average over ``window`` points (default :func:`smoothing_window`); the ends average what they have."""
    import numpy as np

    n = len(values)
    half = (window or smoothing_window(n)) // 2
    sums = np.concatenate([[0.0], np.cumsum(values)])
    at = np.arange(n)
    lo, hi = np.maximum(0, at - half), np.minimum(n, at + half + 1)
    return [float(v) for v in (sums[hi] - sums[lo]) / (hi - lo)]


def plot_training(history: list[dict[str, Any]], path: Path, losses: list[float | None] | None = None) -> str | None:
    """Every step's loss (faint) with its smoothed line, and validation RP@5 at the steps that validated."""
    curve = training_curve(history, losses)
    if not curve["loss_steps"] and not curve["val_steps"]:
        return None
    path.with_suffix(".json").write_text(json.dumps(curve, indent=1))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    handles = []
    if curve["loss_steps"]:
        handles += ax.plot(curve["loss_steps"], curve["loss"], color="tab:blue", lw=0.8, alpha=0.35, label="training loss (every step)")
        handles += ax.plot(curve["loss_steps"], curve["loss_smoothed"], color="tab:blue", lw=2, label=f"smoothed ({smoothing_window(len(curve['loss']))}-step moving mean)")
        ax.set_ylabel("loss")
    ax.set_xlabel("step")
    if curve["val_steps"]:
        for step in curve["val_steps"]:
            ax.axvline(step, color="tab:orange", lw=0.8, ls=":", alpha=0.6)
        ax2 = ax.twinx()
        handles += ax2.plot(curve["val_steps"], curve["val_rp5"], "o-", color="tab:orange", label="validation RP@5")
        ax2.set_ylabel("validation RP@5 (%)")
        lo, hi = min(curve["val_rp5"]), max(curve["val_rp5"])
        ax2.set_ylim(lo - max(1.0, 0.2 * (hi - lo)), hi + max(1.0, 0.2 * (hi - lo)))
    ax.set_title(f"training: {len(curve['loss_steps'])} steps, {len(curve['val_steps'])} validations")
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


NO_COST = "no cost (simulator / self-hosted)"


def plot_cost(estimate: dict[str, Any], summary: dict[str, Any], path: Path) -> str | None:
    est_tokens = estimate.get("prompt_tokens", 0) + estimate.get("completion_tokens", 0)
    act_tokens = summary.get("prompt_tokens", 0) + summary.get("completion_tokens", 0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(7, 3.2))
    a1.bar(["estimate", "actual"], [est_tokens, act_tokens], color=["tab:gray", "tab:blue"])
    a1.set_title("tokens")
    draw_cost(a2, estimate.get("cost_usd") or 0.0, summary.get("cost_usd") or 0.0)
    return _save(fig, path)


def draw_cost(ax, estimate_usd: float, actual_usd: float) -> None:
    """Estimated and actual spend as bars; a run that cost nothing says so instead of drawing an empty axis."""
    ax.set_title("cost (USD)")
    if not estimate_usd and not actual_usd:
        ax.axis("off")
        ax.text(0.5, 0.5, NO_COST, ha="center", va="center", transform=ax.transAxes)
        return
    ax.bar(["estimate", "actual"], [estimate_usd, actual_usd], color=["tab:gray", "tab:blue"])


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


def quality_section(generation_dir, folder: Path, report=None) -> list[str]:
    """The generation run's data-quality report (:mod:`skillgen.quality`; measured here unless given) with its two plots."""
    from skillgen import RunDir, plot_quality, quality_report

    report = report if report is not None else quality_report(generation_dir)
    return report.markdown(plot_quality(RunDir.read_only(generation_dir).rows(), folder, prefix="report_quality"))


def relevance_line(generation_dir, model: Path | None) -> str:
    """Where the sentences' own skills rank for the start encoder ``model`` (None: the bundled MiniLM), in one
    line (``skillgen report --relevance``); a start encoder that cannot be loaded here is said, not raised."""
    from skillgen import UserError, relevance_report
    from skilltrain.model import check_encoder_dir

    try:
        return relevance_report(generation_dir, check_encoder_dir(model) if model is not None else None).line()
    except UserError as exc:
        return f"Relevance: not measured ({exc})"
    except Exception as exc:  # noqa: BLE001 - a report line must not cost the model card and summary after it
        return f"Relevance: not measured ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"


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
        "training": plot_training(training.get("history", []), folder / "report_training.png", training.get("losses")),
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
    lines += ["", "## Data quality (`skillgen report`)", ""] + quality_section(config.generation_dir, folder, outcome.get("data_report"))
    lines += ["", relevance_line(config.generation_dir, config.train_config().model)]
    lines += ["", "## Tokens and cost", "", "| | prompt tokens | completion tokens | cost USD |", "|---|---|---|---|"]
    lines.append(f"| estimate | {est.get('prompt_tokens', '-')} | {est.get('completion_tokens', '-')} | {est.get('cost_usd', '-')} |")
    lines.append(f"| actual | {summ.get('prompt_tokens', '-')} | {summ.get('completion_tokens', '-')} | {summ.get('cost_usd', '-')} |")
    if not est.get("cost_usd") and not summ.get("cost_usd"):
        lines += ["", f"{NO_COST[0].upper()}{NO_COST[1:]}."]
    if images["cost"]:
        lines += ["", f"![cost]({images['cost']})"]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
