"""``skilltrain fit --min-relevance-rank K`` on a run dir whose irrelevant sentences are known
(tests/helpers/relevance_fixture.py): exactly those are dropped, before any worker starts, and the fit says how many
and for which skills. The ranks are the real bundled MiniLM's (the start encoder)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from helpers.relevance_fixture import IRRELEVANT, SENTENCES, build_run_dir, write_taxonomy
from skilltrain.config import TrainConfig


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))
    esco = write_taxonomy(tmp_path / "skills.csv")
    build_run_dir(tmp_path / "run", esco)
    return tmp_path / "run", esco


def config(run: Path, esco: Path, **kw) -> TrainConfig:
    return TrainConfig(data=run, out=run.parent / "model", esco=esco, batch_size=2, val_sets=[], **kw)


def test_the_filter_drops_exactly_the_sentences_about_another_skill(run_dir, caplog):
    from skilltrain.training.fit import prepare

    caplog.set_level(logging.INFO, logger="skilltrain")
    data, info = prepare(config(*run_dir, min_relevance_rank=1))
    assert sorted(data.sentences) == sorted(s for texts in SENTENCES.values() for s in texts if s not in IRRELEVANT)
    drop = info["relevance_filter"]
    assert (drop["sentences"], drop["dropped"], drop["by_skill"]) == (16, 2, {"play violin": 2})
    assert (drop["skills"], drop["skills_hit"], drop["skills_emptied"], drop["candidates"]) == (4, 1, 0, 8)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("relevance filter"))
    assert "dropped 2 of 16 sentences (12.5%)" in line and "play violin (2)" in line and len(line) < 300

    # off by default; a loose K keeps everything
    assert prepare(config(*run_dir))[1]["relevance_filter"] is None
    assert prepare(config(*run_dir, min_relevance_rank=8))[1]["relevance_filter"]["dropped"] == 0


def test_bad_k_is_one_line(run_dir, capsys):
    from skilltrain.cli import main

    run, esco = run_dir
    assert main(["fit", "--data", str(run), "--out", str(run.parent / "m"), "--esco", str(esco),
                 "--min-relevance-rank", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.count("--min-relevance-rank") == 1 and "Traceback" not in err


def test_the_pipeline_passes_min_relevance_rank_to_training(tmp_path: Path):
    from cluster.config import load_pipeline_config

    path = tmp_path / "job.toml"
    path.write_text('run_dir = "runs/x"\n[generation]\nbase_url = "simulator"\n[training]\nmin_relevance_rank = 10\n')
    assert load_pipeline_config(path).train_config().min_relevance_rank == 10


def test_the_log_line_names_the_skills_that_fit_in_300_characters():
    from skilltrain.training.relevance import RelevanceDrop

    many = {f"a skill with a long ESCO label number {i}": 20 - i for i in range(20)}
    line = RelevanceDrop(5, "all-MiniLM-L6-v2", 13896, 3000, 210, 300, 20, 2, many).line()
    assert len(line) <= 300 and "; most: a skill with a long ESCO label number 0 (20)" in line
    assert "number 19" not in line
