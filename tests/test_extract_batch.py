"""Ray Data batch mode: same rows as single-process mode, on a tiny corpus."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from skilltrain.cli import main


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    topics = ["welding", "payroll", "kubernetes", "pastry", "forklift", "audit", "python", "nursing"]
    texts = [f"Job {i}\n• operate {topics[i % 8]} systems\n• manage {topics[(i + 3) % 8]}; teach sales\nApply now" for i in range(40)]
    texts[5] = None
    texts[6] = "  "
    path = tmp_path / "ads.parquet"
    pl.DataFrame({"id": list(range(40)), "text": texts}).write_parquet(path, row_group_size=10)
    return path


@pytest.mark.slow  # ~22 s: Ray Data actors; .ci/run runs it (the default suite stays under 6 min)
def test_batch_mode_matches_single_process(corpus: Path, tiny_encoder_dir: Path, esco_csv: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))
    base = ["extract", "--model", str(tiny_encoder_dir), "--esco", str(esco_csv), "-i", str(corpus), "--top-k", "3"]
    assert main(base + ["--out", str(tmp_path / "single.parquet")]) == 1  # rows 6 and 7 have no text
    rc = main(base + ["--out", str(tmp_path / "batch"), "--actors", "2", "--rows-per-batch", "8"])
    err = capsys.readouterr().err
    assert rc == 1 and "2 document(s) with a null or empty text were skipped" in err

    key = ["doc_id", "sentence_index"]
    single = pl.read_parquet(tmp_path / "single.parquet").sort(key)
    batch = pl.read_parquet(tmp_path / "batch" / "*.parquet").sort(key)
    assert batch.schema == single.schema
    assert batch.height == single.height == 38 * 4
    assert batch.drop("scores").equals(single.drop("scores"))
    diff = (batch["scores"].explode() - single["scores"].explode()).abs().max()
    assert diff < 1e-5

    # --out must be a new directory, and batch mode reads Parquet only
    assert main(base + ["--out", str(tmp_path / "batch"), "--batch"]) == 2
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    assert main(base[:-2] + ["-i", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "b2"), "--batch"]) == 2
    err = capsys.readouterr().err
    assert "not an empty directory" in err and "--batch reads Parquet" in err


@pytest.mark.slow  # ~60-80 s on the loaded 2-core box: a Ray start plus SeaweedFS
def test_batch_mode_reads_and_writes_s3(corpus: Path, tiny_encoder_dir: Path, esco_csv: Path, tmp_path: Path, monkeypatch, s3_bucket):
    from skillgen.common.storage import polars_storage_options, resolve

    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))
    resolve(f"{s3_bucket}/in/ads.parquet").write_bytes(corpus.read_bytes())
    base = ["extract", "--model", str(tiny_encoder_dir), "--esco", str(esco_csv), "--top-k", "3"]
    assert main(base + ["-i", str(corpus), "--out", str(tmp_path / "single.parquet")]) == 1  # rows 6 and 7 have no text
    base.append("--batch")
    assert main(base + ["-i", f"{s3_bucket}/in", "--out", f"{s3_bucket}/out"]) == 1

    key = ["doc_id", "sentence_index"]
    local = pl.read_parquet(tmp_path / "single.parquet").sort(key)
    remote = pl.read_parquet(f"{s3_bucket}/out/*.parquet", storage_options=polars_storage_options(s3_bucket)).sort(key)
    assert remote.height == local.height == 38 * 4
    assert remote.drop("scores").equals(local.drop("scores"))
    assert main(base + ["-i", f"{s3_bucket}/in", "--out", f"{s3_bucket}/out"]) == 2  # not a new directory
