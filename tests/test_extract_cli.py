"""``skilltrain extract``: inputs, outputs, and one-line errors with line numbers."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from skilltrain.cli import main
from skilltrain.extraction.documents import OUTPUT_SCHEMA

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def base(tiny_encoder_dir: Path, esco_csv: Path, tmp_path: Path, monkeypatch) -> list[str]:
    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))
    return ["extract", "--model", str(tiny_encoder_dir), "--esco", str(esco_csv)]


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_text_arguments_to_jsonl_on_stdout(base, capsys):
    assert main(base + ["operate welding systems; sales", "- payroll\n- audit", "--top-k", "2"]) == 0
    rows = _jsonl(capsys.readouterr().out)
    assert [(r["doc_id"], r["sentence_index"], r["sentence"]) for r in rows] == [
        ("arg1", 0, "operate welding systems"), ("arg1", 1, "sales"), ("arg2", 0, "payroll"), ("arg2", 1, "audit"),
    ]
    assert all(len(r["skill_ids"]) == len(r["labels"]) == len(r["scores"]) == 2 for r in rows)
    assert set(rows[0]) == set(OUTPUT_SCHEMA.names)


def test_jsonl_in_parquet_out_keeps_ids(base, tmp_path, capsys):
    src = tmp_path / "ads.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"ad_id": 17, "body": "• inspect forklift systems\n• Apply now"},
        {"body": "teach nursing"},
    ]) + "\n")
    out = tmp_path / "out" / "skills.parquet"
    assert main(base + ["-i", str(src), "--text-field", "body", "--id-field", "ad_id", "--out", str(out)]) == 0
    df = pl.read_parquet(out)
    assert df.columns == OUTPUT_SCHEMA.names
    assert df["doc_id"].to_list()[0] == "17"
    assert len(df["doc_id"].to_list()[1]) == 16  # no id: a hash of the text
    assert df["sentence"].to_list() == ["inspect forklift systems", "teach nursing"]
    assert df["skill_ids"].list.len().to_list() == [5, 5]
    assert "2 sentence(s) from 2 document(s)" in capsys.readouterr().err


def test_parquet_in_jsonl_out_with_min_score(base, tmp_path):
    src = tmp_path / "ads.parquet"
    pl.DataFrame({"id": ["a", "b"], "ad": ["design audit systems", "sales"]}).write_parquet(src)
    out = tmp_path / "skills.jsonl"
    assert main(base + ["-i", str(src), "--text-column", "ad", "--out", str(out), "--min-score", "1.5"]) == 0
    rows = _jsonl(out.read_text())
    assert [r["doc_id"] for r in rows] == ["a", "b"]
    assert all(r["skill_ids"] == [] for r in rows)  # nothing scores above 1.5: sentences kept, skills empty


def test_stdin_is_one_document_and_table_output(base, monkeypatch, capsys):
    _stdin(monkeypatch, b"Requirements:\n- manage payroll systems\n- carpentry\n")
    assert main(base + ["--format", "table", "--top-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "manage payroll systems" in out and "carpentry" in out and "stdin" in out


def test_mixed_jsonl_processes_valid_lines_and_reports_bad_ones(base, tmp_path, capsys):
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(b"\n".join([
        b'{"id": 1, "text": "operate welding systems"}',
        b'{"id": 2, "text": ',
        b'{"id": 3, "body": "no text field"}',
        b'{"id": 4, "text": "caf\xe9 latin-1"}',
        b'{"id": 5, "text": "   "}',
        b'["not", "an", "object"]',
        b'',
        b'{"id": 8, "text": "teach pastry systems"}',
    ]) + b"\n")
    out = tmp_path / "out.jsonl"
    assert main(base + ["-i", str(src), "--out", str(out)]) == 1
    assert [r["doc_id"] for r in _jsonl(out.read_text())] == ["1", "8"]
    err = capsys.readouterr().err
    for line, why in ((2, "invalid JSON"), (3, "no 'text' field"), (4, "not UTF-8"), (5, "empty 'text'"), (6, "expected a JSON object")):
        assert f"mixed.jsonl:{line}: {why}" in err
    assert "5 input record(s) skipped" in err


def test_parquet_null_and_empty_rows_are_reported(base, tmp_path, capsys):
    src = tmp_path / "ads.parquet"
    pl.DataFrame({"text": ["sales", None, "", "audit work"]}).write_parquet(src)
    out = tmp_path / "o.parquet"
    assert main(base + ["-i", str(src), "--out", str(out)]) == 1
    assert pl.read_parquet(out)["sentence"].to_list() == ["sales", "audit work"]
    err = capsys.readouterr().err
    assert "ads.parquet:2: null 'text'" in err and "ads.parquet:3: empty 'text'" in err


@pytest.mark.parametrize("setup,expected", [
    ("empty_stdin", "no input text"),
    ("non_utf8_txt", "not UTF-8 (invalid byte at line 2)"),
    ("all_bad_jsonl", "no valid input records"),
    ("no_encoder", "not an encoder directory"),
    ("missing_file", "input file does not exist"),
    ("parquet_no_column", "no 'text' column"),
    ("bad_out_suffix", "unknown output format"),
])
def test_bad_inputs_fail_with_one_line(setup, expected, base, tmp_path, monkeypatch, capsys):
    args = list(base)
    if setup == "empty_stdin":
        _stdin(monkeypatch, b"  \n")
    elif setup == "non_utf8_txt":
        (tmp_path / "ad.txt").write_bytes(b"line one\nna\xefve caf\xe9\n")
        args += ["-i", str(tmp_path / "ad.txt")]
    elif setup == "all_bad_jsonl":
        (tmp_path / "a.jsonl").write_text('{"x": 1}\n')
        args += ["-i", str(tmp_path / "a.jsonl")]
    elif setup == "no_encoder":
        (tmp_path / "not_a_model").mkdir()
        args[2] = str(tmp_path / "not_a_model")
        args += ["some text"]
    elif setup == "missing_file":
        args += ["-i", str(tmp_path / "nope.jsonl")]
    elif setup == "parquet_no_column":
        pl.DataFrame({"body": ["x"]}).write_parquet(tmp_path / "p.parquet")
        args += ["-i", str(tmp_path / "p.parquet")]
    elif setup == "bad_out_suffix":
        args += ["text", "--out", str(tmp_path / "out.csv")]
    rc = main(args)
    captured = capsys.readouterr()
    assert rc != 0
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and expected in errors[0], captured.err
    assert captured.out == ""


def test_console_script_exit_codes(tmp_path):
    """The installed entry point: exit 2 and a single stderr line, no traceback."""
    exe = REPO / ".venv" / "bin" / "skilltrain"
    if not exe.exists():
        pytest.skip("console script not installed")
    (tmp_path / "empty_model").mkdir()
    proc = subprocess.run([str(exe), "extract", "--model", str(tmp_path / "empty_model"), "hello"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"skilltrain: error: {tmp_path / 'empty_model'}: not an encoder directory (no config.json)"]


def test_backend_and_device_flags(base, capsys):
    import torch

    assert main(base + ["--backend", "torch-bf16", "--encode-batch-size", "2", "sales", "audit work"]) == 0
    assert [r["sentence"] for r in _jsonl(capsys.readouterr().out)] == ["sales", "audit work"]
    if not torch.cuda.is_available():
        assert main(base + ["--device", "cuda", "sales"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA GPU is visible" in err[0]
