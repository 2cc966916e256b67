"""The run report's training and cost plots (cluster/report.py), issue 29: a report that reads right on short runs."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_training_curve_has_every_step_a_smoothed_line_and_the_validations():
    from cluster.run_report import smoothing_window, training_curve

    rng = np.random.default_rng(0)
    losses = [float(v) for v in 2.0 - np.linspace(0, 1, 60) + rng.normal(0, 0.2, 60)]
    history = [{"step": s, "loss": losses[s - 1]} for s in range(10, 61, 10)] + [{"step": 30, "loss": losses[29], "val_rp5": 40.0},
                                                                                {"step": 60, "loss": losses[59], "val_rp5": 42.5}]
    curve = training_curve(history, losses)
    assert curve["loss_steps"] == list(range(1, 61)) and curve["loss"] == losses
    assert curve["val_steps"] == [30, 60] and curve["val_rp5"] == [40.0, 42.5]
    smoothed = np.array(curve["loss_smoothed"])
    assert smoothing_window(60) == 3 and smoothed[10] == pytest.approx(np.mean(losses[9:12]))
    assert smoothed[0] == pytest.approx(np.mean(losses[:2]))  # the ends average what they have
    assert np.std(np.diff(smoothed)) < np.std(np.diff(losses))


def test_steps_an_older_checkpoint_did_not_keep_come_from_the_logged_history():
    from cluster.run_report import training_curve

    losses = [None] * 20 + [1.0] * 10  # resumed at step 20 from a checkpoint without per-step losses
    history = [{"step": s, "loss": 2.0} for s in (10, 20)]
    curve = training_curve(history, losses)
    assert curve["loss_steps"] == [10, 20] + list(range(21, 31)) and curve["loss"][:2] == [2.0, 2.0]


def test_training_plot_is_written_with_its_data(tmp_path):
    from cluster.run_report import plot_training

    losses = [1.0 / s for s in range(1, 47)]
    name = plot_training([{"step": 46, "loss": losses[-1], "val_rp5": 50.0}], tmp_path / "report_training.png", losses)
    assert name == "report_training.png" and (tmp_path / name).stat().st_size > 0
    assert len(json.loads((tmp_path / "report_training.json").read_text())["loss_smoothed"]) == 46


def test_cost_of_a_free_run_is_said_not_drawn_as_an_empty_axis(tmp_path):
    import matplotlib.pyplot as plt

    from cluster.run_report import NO_COST, draw_cost, plot_cost

    fig, (free, paid) = plt.subplots(1, 2)
    draw_cost(free, 0.0, 0.0)
    draw_cost(paid, 0.5, 0.42)
    assert [t.get_text() for t in free.texts] == [NO_COST] and not free.patches and not free.axison
    assert not paid.texts and [round(p.get_height(), 2) for p in paid.patches] == [0.5, 0.42]
    plt.close(fig)
    assert plot_cost({"cost_usd": 0.0, "prompt_tokens": 10}, {"cost_usd": 0.0, "prompt_tokens": 9}, tmp_path / "cost.png") == "cost.png"
