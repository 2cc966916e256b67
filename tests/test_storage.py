"""skillgen.common.storage on local disk and on a real S3 server (SeaweedFS over loopback)."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest

from skillgen.common.errors import UserError
from skillgen.common.storage import S3Settings, polars_storage_options, resolve


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """The same run-dir operations must hold on both backends."""
    if request.param == "local":
        return resolve(tmp_path / "run")
    return resolve(request.getfixturevalue("s3_bucket") + "/runs/a")


def test_write_read_list_exists_delete(root):
    shard = root / "shards" / "part-001.parquet"
    frame = pl.DataFrame({"skill_id": ["a", "b"], "n": [1, 2]})
    shard.write_parquet(frame)
    (root / "shards" / "part-002.parquet").write_parquet(frame.head(1))
    (root / "shards" / ".part-003.parquet.tmp").write_bytes(b"junk")
    (root / "run.json").write_text('{"x": 1}')

    assert root.exists() and shard.exists() and shard.is_file()
    assert [loc.name for loc in (root / "shards").list("part-*.parquet")] == ["part-001.parquet", "part-002.parquet"]
    assert shard.read_parquet().equals(frame)
    assert (root / "run.json").read_text() == '{"x": 1}'
    assert (root / "missing").list() == [] and not (root / "missing.json").exists()

    (root / "run.json").write_text('{"x": 2}')  # overwrite replaces the whole object
    assert (root / "run.json").read_text() == '{"x": 2}'
    shard.delete()
    shard.delete()  # twice is fine
    assert not shard.exists()
    assert [loc.name for loc in (root / "shards").list("part-*")] == ["part-002.parquet"]


def test_create_if_absent_is_exclusive_under_contention(root):
    lease = root / "lease.json"
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: lease.create_if_absent(f"owner-{i}".encode()), range(8)))
    assert won.count(True) == 1, won
    assert lease.read_bytes() == f"owner-{won.index(True)}".encode()
    assert lease.create_if_absent(b"late") is False


def test_replace_if_unchanged(root):
    lease = root / "lease.json"
    assert lease.create_if_absent(b"v1")
    data, version = lease.read_versioned()
    assert data == b"v1"
    assert lease.replace_if_unchanged(b"v2", version) is True
    assert lease.replace_if_unchanged(b"v3", version) is False  # someone (we) changed it since
    assert lease.read_bytes() == b"v2"
    assert (root / "nothing.json").replace_if_unchanged(b"x", version) is False


def test_polars_reads_shards_from_s3_with_env_options(s3_bucket):
    root = resolve(s3_bucket + "/gen")
    for i in range(3):
        (root / "shards" / f"part-{i}.parquet").write_parquet(pl.DataFrame({"i": [i, i]}))
    options = polars_storage_options(s3_bucket)
    assert options["aws_allow_http"] == "true" and "aws_secret_access_key" in options
    frame = pl.scan_parquet(f"{s3_bucket}/gen/shards/*.parquet", storage_options=options).collect()
    assert sorted(frame["i"].to_list()) == [0, 0, 1, 1, 2, 2]
    assert polars_storage_options("/tmp/x") is None


def test_location_pickles_without_credentials(s3_bucket):
    loc = resolve(s3_bucket + "/runs/b")
    blob = pickle.dumps(loc)
    secret = S3Settings.from_env().secret_key
    assert secret and secret.encode() not in blob
    again = pickle.loads(blob)
    (again / "x").write_text("hi")
    assert (loc / "x").read_text() == "hi"
    assert secret not in repr(S3Settings.from_env())


@pytest.mark.parametrize(
    "uri", ["s3://AKIAXXXX:topsecret@bucket/run", "gs://bucket/run?access_key=a&secret_key=topsecret"]
)
def test_credentials_in_uri_refused_without_echo(uri):
    with pytest.raises(UserError) as err:
        resolve(uri, "run_dir")
    message = str(err.value)
    assert message.startswith("run_dir:") and "topsecret" not in message and "\n" not in message



def test_generation_config_refuses_run_dir_with_credentials():
    from skillgen.config import make_config

    with pytest.raises(UserError) as err:
        make_config({"run_dir": "s3://AKIAXXXX:topsecret@bucket/run", "model": "m", "base_url": "http://127.0.0.1:1/v1"}, source="cfg")
    assert "run_dir" in str(err.value) and "topsecret" not in str(err.value)
