"""Where run dirs and outputs live: a local path or a URI, as one pyarrow FileSystem plus a path.

A cluster whose nodes share no disk keeps its run dirs on object storage. Everything that
reads or writes a run dir (shards, failure records, run.json, the lease, checkpoints) goes
through a :class:`Location`, so the same code runs on a laptop and on ``s3://``/``gs://``
(any filesystem ``pyarrow.fs`` supports).

Object stores have no atomic rename, so the rules differ from a POSIX disk:

* ``write_bytes``/``write_parquet`` write the final key once. An S3 object becomes
  visible only when its upload completes, so a reader never sees half a shard; locally
  the same guarantee comes from write-to-temp, fsync, rename.
* ``create_if_absent`` and ``replace_if_unchanged`` are the two conditional writes a
  lease needs. On S3 they are ``PutObject`` with ``If-None-Match: *`` / ``If-Match: <etag>``
  (AWS since 2024; SeaweedFS honours both, see tests/test_storage.py), sent with boto3
  because pyarrow cannot send those headers. Locally they are ``link()`` of a complete
  temp file (fails if the name exists) and a compare-and-replace under ``flock``. Other
  stores raise :class:`ConditionalWriteUnsupported` rather than pretend.

Credentials come only from the standard environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, and
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for S3-compatible stores). Without keys
in the environment the AWS SDK's default chain applies (pod/instance role). A URI that
carries credentials is refused, and a Location pickles as its URI (the receiving process
rebuilds the filesystem from its own environment), so no key travels or is written.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import io
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

from skillgen.common.atomic import fsync_dir, temp_path, write_atomic
from skillgen.common.errors import UserError

__all__ = ["ConditionalWriteUnsupported", "Location", "S3Settings", "S3_SCHEMES", "check_uri", "is_remote",
           "is_uri", "path_or_uri", "polars_storage_options", "resolve", "staged_locally"]

S3_SCHEMES = ("s3", "s3a")
_SECRET_QUERY = re.compile(r"key|secret|token|password|credential", re.IGNORECASE)
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class ConditionalWriteUnsupported(NotImplementedError):
    """The store has no conditional write we know how to send (e.g. ``gs://`` for now)."""


def is_uri(location: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (``file://`` included), False for a plain local path."""
    return bool(_URI.match(str(location)))


def is_remote(location: str | os.PathLike) -> bool:
    """True when the location is not on this machine's disk (anything but a path or ``file://``)."""
    return is_uri(location) and urlsplit(str(location)).scheme.lower() != "file"


def check_uri(uri: str, what: str = "location") -> None:
    """Refuse a URI with credentials in it (user:secret@ or ?secret_key=...), in one line that does not echo them."""
    parts = urlsplit(uri)
    if "@" in parts.netloc or any(_SECRET_QUERY.search(k) for k, _ in parse_qsl(parts.query)):
        raise UserError(
            f"{what}: {parts.scheme}:// URI with credentials in it; remove them and set AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY (or the store's standard variables) in the environment instead"
        )


# ---- credentials and endpoint from the environment --------------------------------------------------


@dataclass(frozen=True)
class S3Settings:
    """The S3 client settings the environment defines; ``repr`` never shows the secret."""

    access_key: str | None
    secret_key: str | None
    session_token: str | None
    region: str | None
    endpoint: str | None  # e.g. http://127.0.0.1:8333 for an S3-compatible store

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "S3Settings":
        env = os.environ if env is None else env
        return cls(
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
        )

    def __repr__(self) -> str:
        return f"S3Settings(region={self.region!r}, endpoint={self.endpoint!r}, keys={'env' if self.access_key else 'default chain'})"

    @property
    def http(self) -> bool:
        return bool(self.endpoint) and self.endpoint.lower().startswith("http://")

    def pyarrow_fs(self):
        import pyarrow.fs as pafs

        options: dict[str, Any] = {"region": self.region}
        if self.access_key and self.secret_key:
            options.update(access_key=self.access_key, secret_key=self.secret_key, session_token=self.session_token)
        if self.endpoint:
            options.update(endpoint_override=self.endpoint, scheme="http" if self.http else "https")
        return pafs.S3FileSystem(**{k: v for k, v in options.items() if v is not None})

    def polars_options(self) -> dict[str, str]:
        """``storage_options`` for ``pl.scan_parquet("s3://...")`` with the same settings."""
        names = {
            "aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret_key,
            "aws_session_token": self.session_token, "aws_region": self.region, "aws_endpoint_url": self.endpoint,
        }
        options = {k: v for k, v in names.items() if v}
        if self.http:
            options["aws_allow_http"] = "true"
        return options

    def boto3_client(self):
        try:
            import boto3
        except ImportError:
            raise UserError("conditional writes on s3:// need boto3: pip install 'esco-skillgen[s3]'") from None
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region or "us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            aws_session_token=self.session_token,
        )


def path_or_uri(value: Any) -> Any:
    """Config-field coercion: a URI stays a string (``Path`` would fold ``s3://`` to ``s3:/``), anything else is a Path."""
    if isinstance(value, str) and is_uri(value):
        check_uri(value)
        return value
    return Path(value) if isinstance(value, (str, os.PathLike)) else value


@contextmanager
def staged_locally(location: "str | os.PathLike | Location") -> Iterator[Path]:
    """A local folder to write into: the location itself on local disk; else a temp dir uploaded on success.

    For writers that only know local paths (``save_pretrained``, ``savefig``): nothing partial is
    uploaded if the block raises.
    """
    where = resolve(location)
    if where.is_local:
        where.mkdir()
        yield where.local_path
        return
    with tempfile.TemporaryDirectory(prefix="skillgen-stage-") as tmp:
        yield Path(tmp)
        where.upload_dir(Path(tmp))


@functools.lru_cache(maxsize=8)
def _s3_filesystem(settings: S3Settings):
    """One client per distinct environment: a run dir resolves many paths, and a client costs a TLS/SDK set-up."""
    return settings.pyarrow_fs()


def polars_storage_options(location: str | os.PathLike) -> dict[str, str] | None:
    """Polars ``storage_options`` for an ``s3://`` location (None for anything else: Polars' own defaults)."""
    if urlsplit(str(location)).scheme.lower() in S3_SCHEMES:
        return S3Settings.from_env().polars_options()
    return None


# ---- a resolved location ----------------------------------------------------------------------------


def resolve(location: "str | os.PathLike | Location", what: str = "location") -> "Location":
    """A local path or URI as a :class:`Location`; ``what`` names the setting in error messages."""
    if isinstance(location, Location):
        return location
    text = str(location)
    if not is_uri(text):
        import pyarrow.fs as pafs

        path = str(Path(text).expanduser().resolve())
        return Location(path, pafs.LocalFileSystem(), path)
    check_uri(text, what)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in S3_SCHEMES:
        if parts.query:
            raise UserError(f"{what}: {text}: no query options on s3:// URIs; the endpoint and region come from AWS_* variables")
        path = f"{parts.netloc}{parts.path}".rstrip("/")
        if not parts.netloc:
            raise UserError(f"{what}: {text}: no bucket name")
        return Location(text.rstrip("/"), _s3_filesystem(S3Settings.from_env()), path)
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (OSError, ValueError) as exc:
        raise UserError(f"{what}: {text}: {str(exc).splitlines()[0]}") from None
    return Location(text.rstrip("/"), fs, path.rstrip("/"))


class Location:
    """A file or folder on some filesystem: ``fs`` (pyarrow), ``path`` (in fs terms), ``uri`` (the URI, or the absolute local path)."""

    def __init__(self, uri: str, fs: Any, path: str) -> None:
        self.uri, self.fs, self.path = uri, fs, path

    # -- naming --
    def __truediv__(self, name: str) -> "Location":
        return Location(f"{self.uri}/{name}" if is_uri(self.uri) else str(Path(self.uri) / name), self.fs, f"{self.path}/{name}")

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.scheme, self.path) == (other.scheme, other.path)

    def __hash__(self) -> int:
        return hash((self.scheme, self.path))

    def __reduce__(self):  # pickles as its URI: the other process builds the filesystem from its own environment
        return (resolve, (self.uri,))

    @property
    def parent(self) -> "Location":
        uri = self.uri.rstrip("/").rsplit("/", 1)[0]
        return Location(uri, self.fs, self.path.rstrip("/").rsplit("/", 1)[0])

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def scheme(self) -> str:
        return urlsplit(self.uri).scheme.lower() if is_uri(self.uri) else "file"

    @property
    def is_local(self) -> bool:
        return self.fs.type_name == "local"

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise ValueError(f"{self.uri} is not on the local disk")
        return Path(self.path)

    # -- reading --
    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def read_parquet(self):
        import polars as pl

        return pl.read_parquet(io.BytesIO(self.read_bytes()))

    def list(self, pattern: str = "*", recursive: bool = False) -> list["Location"]:
        """Files in this folder (and below, if ``recursive``) whose name matches ``pattern``, sorted; [] if none or no folder."""
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=recursive, allow_not_found=True))
        prefix = len(self.path.rstrip("/")) + 1
        rel = sorted(i.path[prefix:] for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.base_name, pattern))
        return [self / r for r in rel]

    # -- writing --
    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """Create the folder (a no-op on object stores, where folders are only key prefixes)."""
        if self.is_local:
            self.local_path.mkdir(parents=parents, exist_ok=exist_ok)

    def upload_dir(self, local_dir: Path) -> None:
        """Copy a finished local folder here (e.g. a model exported to a temp dir); each file written once."""
        import pyarrow.fs as pafs

        self.mkdir()
        pafs.copy_files(str(local_dir), self.path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)

    def download_dir(self, local_dir: Path) -> None:
        import pyarrow.fs as pafs

        pafs.copy_files(self.path, str(local_dir), source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem())

    def write_bytes(self, data: bytes) -> None:
        """Write the whole object at once: readers see the old content or the new, never a part."""
        if self.is_local:
            _replace_local(self.local_path, data)
            return
        with self.fs.open_output_stream(self.path) as out:
            out.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_parquet(self, frame, compression: str = "zstd") -> None:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression=compression)
        self.write_bytes(buffer.getvalue())

    def move_to(self, target: "Location") -> None:
        """Move this file or folder to ``target``: a rename on local disk, a copy then a delete on object
        storage (which has no rename; a crash in between leaves both, never neither)."""
        target.parent.mkdir()
        if self.is_local and target.is_local:
            self.local_path.rename(target.local_path)
            return
        import pyarrow.fs as pafs

        pafs.copy_files(self.path, target.path, source_filesystem=self.fs, destination_filesystem=target.fs)
        self.delete()

    def delete(self) -> None:
        """Delete a file or folder; a missing one is fine (deleting twice is not an error)."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.File:
            self.fs.delete_file(self.path)
        elif info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)

    # -- conditional writes (the lease) --
    def create_if_absent(self, data: bytes) -> bool:
        """Write ``data`` only if nothing is there; True if this call created it. Atomic on local disk and S3."""
        if self.is_local:
            return _create_local(self.local_path, data)
        bucket, key = self._s3_bucket_key("create_if_absent")
        client = S3Settings.from_env().boto3_client()  # a one-line UserError when boto3 is not installed
        from botocore.exceptions import ClientError

        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True

    def read_versioned(self) -> tuple[bytes, str]:
        """Content and a version tag for :meth:`replace_if_unchanged` (S3 ETag; locally a content hash)."""
        if self.is_local:
            data = self.local_path.read_bytes()
            return data, hashlib.sha256(data).hexdigest()
        bucket, key = self._s3_bucket_key("read_versioned")
        reply = S3Settings.from_env().boto3_client().get_object(Bucket=bucket, Key=key)
        return reply["Body"].read(), reply["ETag"]

    def replace_if_unchanged(self, data: bytes, version: str) -> bool:
        """Replace the content only if it is still at ``version`` (from :meth:`read_versioned`); True if replaced."""
        if self.is_local:
            return _replace_local_if(self.local_path, data, version)
        bucket, key = self._s3_bucket_key("replace_if_unchanged")
        client = S3Settings.from_env().boto3_client()
        from botocore.exceptions import ClientError

        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, IfMatch=version)
        except ClientError as exc:
            if _precondition_failed(exc) or exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise
        return True

    def _s3_bucket_key(self, operation: str) -> tuple[str, str]:
        if self.scheme not in S3_SCHEMES:
            raise ConditionalWriteUnsupported(
                f"{self.uri}: {operation} is implemented for local disk and s3:// only (no conditional write for {self.scheme}:// yet)"
            )
        bucket, _, key = self.path.partition("/")
        return bucket, key


def _precondition_failed(exc: Any) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status in (409, 412) or error.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict")


# ---- local disk: the same guarantees with POSIX calls -----------------------------------------------


def _write_temp(target: Path, data: bytes) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _replace_local(target: Path, data: bytes) -> None:
    write_atomic(target, data)


def _create_local(target: Path, data: bytes) -> bool:
    """``link()`` of a complete temp file: fails if the name exists, and never exposes a partial file."""
    tmp = _write_temp(target, data)
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return True


def _replace_local_if(target: Path, data: bytes, version: str) -> bool:
    import fcntl

    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = target.read_bytes()
        except FileNotFoundError:
            return False
        if hashlib.sha256(current).hexdigest() != version:
            return False
        _replace_local(target, data)
        return True
