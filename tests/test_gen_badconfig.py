"""Bad configuration fails before any token is spent, with one clear line (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skillgen.cli import PROG
from skillgen.common.argparsing import dispatch
from skillgen.config import GenerationConfig
from skillgen.common.errors import UserError
from skillgen import run_generation
from helpers.generation import esco, gen_config
from helpers.ports import free_port

MY_COMMANDS = {"run": "skillgen.commands.run", "estimate": "skillgen.commands.estimate", "status": "skillgen.commands.status"}


def cli(argv, capsys):
    rc = dispatch(argv, PROG, "", MY_COMMANDS)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_unknown_model_without_price(tmp_path: Path, capsys):
    csv = esco(tmp_path, 3)
    rc, out, err = cli(["run", "--esco", str(csv), "--model", "mystery-llm", "--base-url", "http://127.0.0.1:9/v1",
                        "--run-dir", str(tmp_path / "r")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "no price known for model 'mystery-llm'" in err
    assert not (tmp_path / "r").exists()


def test_negative_limits(tmp_path: Path, capsys):
    for flag in ("--rpm", "--tpm", "--spend-cap-usd", "--workers"):
        rc, _, err = cli(["run", flag, "-5", "--run-dir", str(tmp_path / "r")], capsys)
        assert rc == 2 and err.count("\n") == 1, (flag, err)
        assert err.startswith(f"skillgen: error: {flag}: "), err  # the flag the user typed, not the field (issue 30)


def test_unwritable_run_dir(tmp_path: Path, capsys):
    csv = esco(tmp_path, 3)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = cli(["run", "--esco", str(csv), "--model", "simulator", "--base-url", "http://127.0.0.1:9/v1",
                      "--run-dir", str(blocker / "sub")], capsys)
    assert rc == 2 and "not writable" in err and err.count("\n") == 1


def test_unreachable_endpoint(tmp_path: Path, capsys):
    csv = esco(tmp_path, 3)
    url = f"http://127.0.0.1:{free_port()}/v1"
    rc, _, err = cli(["run", "--esco", str(csv), "--model", "simulator", "--base-url", url,
                      "--run-dir", str(tmp_path / "r")], capsys)
    assert rc == 2 and "unreachable" in err and err.count("\n") == 1
    assert not list((tmp_path / "r").rglob("*.parquet"))


def test_missing_openai_key(tmp_path: Path, monkeypatch):
    csv = esco(tmp_path, 3)
    monkeypatch.delenv("SKILLGEN_ABSENT_KEY", raising=False)
    cfg = GenerationConfig(esco=str(csv), model="gpt-4o-mini", api_key_env="SKILLGEN_ABSENT_KEY", run_dir=str(tmp_path / "r"))
    with pytest.raises(UserError, match="SKILLGEN_ABSENT_KEY is not set"):
        run_generation(cfg, progress=False)


def test_fingerprint_mismatch(tmp_path: Path):
    from skillgen.rundir.rundir import RunDir

    csv = esco(tmp_path, 3)
    cfg = gen_config("http://127.0.0.1:9/v1", csv, tmp_path / "r")
    with RunDir.open(cfg) as run_dir:  # a run dir holding work (a run dir without any is taken over: issue 30)
        run_dir.write_batch_file("manifest.json", "{}")
    with pytest.raises(UserError, match="different model/prompt/sampling"):
        RunDir.open(cfg.model_copy(update={"temperature": 0.3}))
    RunDir.open(cfg.model_copy(update={"tpm": 1000, "spend_cap_usd": 3.0})).close()  # limits may change


def test_help_explains_options(capsys):
    with pytest.raises(SystemExit):
        dispatch(["run", "--help"], PROG, "", MY_COMMANDS)
    out = capsys.readouterr().out
    for flag in ("--esco", "--limit", "--sample", "--seed", "--skill-type", "--base-url", "--model", "--api-key-env",
                 "--rpm", "--tpm", "--spend-cap-usd", "--workers", "--run-dir", "--sentences", "--config"):
        assert flag in out
    with pytest.raises(SystemExit):
        dispatch(["estimate", "--help"], PROG, "", MY_COMMANDS)
    assert "--pilot" in capsys.readouterr().out
