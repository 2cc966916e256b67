"""Pairs from run dirs, taxonomy pairs, bad input, skill-unique batches, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from skillgen.common.errors import UserError
from skillgen.common.taxonomy import load_skills
from skilltrain.training.augment import NO_PARTNER, augment_batch, step_rng
from skilltrain.training.data import load_pairs, taxonomy_pairs
from skilltrain.training.sampler import plan_epoch


def write_run_dir(path: Path, skills: list[tuple[str, str]], per_skill: int = 3, shards: int = 2, **extra_cols) -> Path:
    """A generation run dir with synthetic rows, split over ``shards`` files."""
    rows = [
        {"skill_id": sid, "label": label, "sentence": f"You will {label} every day, case {k}.", "sample_idx": k}
        for sid, label in skills
        for k in range(per_skill)
    ]
    frame = pl.DataFrame(rows).with_columns(
        pl.lit("rk").alias("request_key"), pl.lit("sim").alias("model"), pl.lit("v1").alias("prompt_version"), **extra_cols
    )
    (path / "shards").mkdir(parents=True, exist_ok=True)
    (path / "failures").mkdir(exist_ok=True)
    (path / "run.json").write_text("{}")
    for i, part in enumerate(np.array_split(np.arange(frame.height), shards)):
        frame[part.tolist()].write_parquet(path / "shards" / f"part-{i:05d}.parquet")
    return path


def skill_list(n: int) -> list[tuple[str, str]]:
    return [(f"http://example.org/skill/{i:05d}", f"skill label {i}") for i in range(n)]


def test_load_pairs_dedups_and_is_order_independent(tmp_path):
    a = write_run_dir(tmp_path / "a", skill_list(5), per_skill=3, shards=1)
    b = write_run_dir(tmp_path / "b", skill_list(5)[::-1], per_skill=3, shards=3)
    pa, pb = load_pairs(a), load_pairs(b)
    assert pa.height == 15 and pa.equals(pb)
    assert pa["cls"].n_unique() == 5
    # a duplicate row (same sentence, same label) in another shard counts once
    pl.read_parquet(a / "shards" / "part-00000.parquet").head(4).write_parquet(a / "shards" / "part-00009.parquet")
    assert load_pairs(a).height == 15


def test_taxonomy_pairs_are_opt_in(tmp_path, esco_csv):
    skills = load_skills(esco_csv)
    run = write_run_dir(tmp_path / "run", list(zip(skills["skill_id"], skills["label"]))[:10])
    plain = load_pairs(run)
    extra = load_pairs(run, skills)
    tax = taxonomy_pairs(skills)
    assert set(tax["source"].unique()) == {"alt_label", "description"}
    assert tax.height == 40 * 2 + 40  # two alt labels and one description each
    assert extra.height == plain.height + tax.height
    assert extra["cls"].n_unique() == 40
    row = extra.filter(pl.col("sentence") == "handle welding 0")
    assert row["label"].to_list() == [skills["label"][0]]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no shards/part-"),
        (lambda p: write_run_dir(p / "w", skill_list(3)).joinpath("shards/part-00000.parquet").unlink() or _bad_schema(p / "w"), "lack column"),
        (lambda p: _bad_type(p / "t"), "wrong type"),
        (lambda p: _empty_rows(p / "e"), "no non-empty"),
    ],
)
def test_bad_run_dirs_fail_with_one_line(tmp_path, make, message):
    with pytest.raises(UserError, match=message) as info:
        load_pairs(make(tmp_path))
    assert "\n" not in str(info.value)


def _bad_schema(path: Path) -> Path:
    for p in (path / "shards").glob("*.parquet"):
        p.unlink()
    pl.DataFrame({"skill": ["a"], "text": ["b"]}).write_parquet(path / "shards" / "part-00000.parquet")
    return path


def _bad_type(path: Path) -> Path:
    (path / "shards").mkdir(parents=True)
    pl.DataFrame({"skill_id": [1], "label": ["x"], "sentence": ["y"]}).write_parquet(path / "shards" / "part-00000.parquet")
    return path


def _empty_rows(path: Path) -> Path:
    (path / "shards").mkdir(parents=True)
    pl.DataFrame({"skill_id": ["a"], "label": ["x"], "sentence": ["  "]}).write_parquet(path / "shards" / "part-00000.parquet")
    return path


def test_sampler_global_batches_are_skill_unique_and_deterministic():
    rng = np.random.default_rng(0)
    classes = np.repeat(np.arange(50), 10)
    classes = np.concatenate([classes, np.full(40, 3)])  # one skill with many pairs (taxonomy-like)
    rng.shuffle(classes)
    plan = plan_epoch(classes, 32, seed=1, epoch=0)
    assert len(plan) > 0
    for batch in plan.batches:
        assert len(set(classes[batch].tolist())) == 32
    used = plan.batches.ravel()
    assert len(set(used.tolist())) == len(used)  # no pair twice
    assert len(used) + plan.dropped == len(classes)
    again = plan_epoch(classes, 32, seed=1, epoch=0)
    assert np.array_equal(plan.batches, again.batches)
    assert not np.array_equal(plan.batches, plan_epoch(classes, 32, seed=1, epoch=1).batches)
    # rank slices partition the global batch
    parts = np.concatenate([plan.local(0, r, 8) for r in range(4)])
    assert np.array_equal(parts, plan.batches[0])


def test_augmentation_joins_other_skills_before_or_after():
    sentences = [f"sentence {i}" for i in range(40)]
    labels = [f"label {i // 4}" for i in range(40)]
    classes = np.arange(40) // 4
    idx = np.arange(0, 40, 4)
    out = augment_batch(idx, sentences, labels, classes, np.arange(40), prob=1.0, rng=step_rng(0, 0, 0))
    assert (out.partner_cls != NO_PARTNER).all()
    assert (out.partner_cls != out.cls).all()
    positions = set()
    for row, text in enumerate(out.texts):
        own = sentences[idx[row]]
        assert own in text and text != own
        positions.add(text.startswith(own))
        partner_text = text.replace(own, "").strip()
        assert classes[sentences.index(partner_text)] == out.partner_cls[row]
    assert positions == {True, False}
    none = augment_batch(idx, sentences, labels, classes, np.arange(40), prob=0.0, rng=step_rng(0, 0, 0))
    assert none.texts == [sentences[i] for i in idx] and (none.partner_cls == NO_PARTNER).all()
    same = augment_batch(idx, sentences, labels, classes, np.arange(40), prob=1.0, rng=step_rng(0, 0, 0))
    assert same.texts == out.texts
