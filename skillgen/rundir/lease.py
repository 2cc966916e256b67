"""One writer per run dir: a lease file taken before anything is sent.

Why a lease and not a plain lock: a run dir may live on a shared filesystem or
(next) on object storage, where ``flock`` does not exist and a crashed holder
never unlocks. A lease is a small JSON document naming its holder (host, pid,
start time) and when it was last renewed; the holder renews it every
``ttl_s / 3`` seconds. Another process may take it over only when it is
*stale*: its TTL ran out, or its holder is on this host and its pid is gone.

The storage side is two conditional writes, the operations object stores
offer (``If-None-Match: *`` and ``If-Match: <etag>``):

- :meth:`LeaseBackend.create_exclusive` -- create the document if absent;
- :meth:`LeaseBackend.replace_if_unchanged` -- replace it only if it is still
  the version we read (renewal, takeover, release).

:class:`LocalLeaseBackend` implements them with ``os.link`` (atomic
create-if-absent of a fully written file) and a compare-and-swap under a
short ``flock``; an S3 backend only needs the same three methods.

Usage::

    with RunDirLease.acquire(run_dir):   # UserError (exit 2) naming the holder if taken
        ...                               # lease.lost is set if someone else took it over
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from skillgen.common.atomic import fsync_dir, temp_path, write_atomic
from skillgen.common.errors import UserError

__all__ = ["DEFAULT_TTL_S", "LEASE_FILE", "Lease", "LeaseBackend", "LocalLeaseBackend", "RunDirInUse",
           "RunDirLease", "StorageLeaseBackend", "TTL_ENV", "backend_for", "default_ttl_s"]

log = logging.getLogger(__name__)

LEASE_FILE = ".skillgen.lease"
DEFAULT_TTL_S = 60.0
TTL_ENV = "SKILLGEN_LEASE_TTL_S"  # a longer TTL where renewals may stall (a slow store, a paused process)


def default_ttl_s() -> float:
    try:
        return max(1.0, float(os.environ.get(TTL_ENV, DEFAULT_TTL_S)))
    except ValueError:
        raise UserError(f"${TTL_ENV}: not a number of seconds") from None


class RunDirInUse(UserError):
    """Another live process holds the run dir's lease (exit 2, naming it)."""


@dataclass(frozen=True)
class Lease:
    """Who holds a run dir. ``renewed_at`` is wall-clock epoch seconds (hosts must roughly agree on time)."""

    token: str
    host: str
    pid: int
    started_at: str
    renewed_at: float
    ttl_s: float
    purpose: str = "skillgen run"

    @classmethod
    def new(cls, ttl_s: float, purpose: str = "skillgen run") -> "Lease":
        now = time.time()
        return cls(uuid.uuid4().hex, socket.gethostname(), os.getpid(),
                   datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"), now, ttl_s, purpose)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Lease":
        return cls(**json.loads(data))

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) > self.renewed_at + self.ttl_s

    def holder_gone(self) -> bool:
        """True only when we can tell: the holder ran on this host and its pid no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def stale(self) -> bool:
        return self.expired() or self.holder_gone()

    def describe(self) -> str:
        return f"{self.purpose} on host {self.host}, pid {self.pid}, started {self.started_at}"


class LeaseBackend(Protocol):
    """Conditional writes of one lease document. ``version`` is an opaque tag (an ETag on object storage)."""

    def read(self) -> tuple[Lease, str] | None: ...

    def create_exclusive(self, lease: Lease) -> str | None:
        """Write ``lease`` if no lease exists; its version, or None if one exists."""

    def replace_if_unchanged(self, lease: Lease | None, version: str) -> str | None:
        """Replace (or delete, ``lease=None``) the lease if it is still at ``version``; new version or None."""


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class LocalLeaseBackend:
    """A lease file on a POSIX filesystem."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> tuple[Lease, str] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Lease.from_bytes(data), _version(data)
        except (ValueError, TypeError) as exc:
            raise UserError(f"{self.path}: damaged lease file ({exc}); if no run uses this dir, delete the file") from None

    def create_exclusive(self, lease: Lease) -> str | None:
        data = lease.to_bytes()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.path)
        tmp.write_bytes(data)
        try:
            os.link(tmp, self.path)  # atomic, and the file is complete the moment it exists
        except FileExistsError:
            return None
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.path.parent)
        return _version(data)

    def replace_if_unchanged(self, lease: Lease | None, version: str) -> str | None:
        guard = self.path.parent / f"{self.path.name}.cas"
        with open(guard, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # serialises compare-and-swap between processes on this host
            try:
                current = self.read()
                if current is None or current[1] != version:
                    return None
                if lease is None:
                    self.path.unlink()
                    return ""
                data = lease.to_bytes()
                write_atomic(self.path, data)
                return _version(data)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class StorageLeaseBackend:
    """A lease object on object storage (``s3://``): create-if-absent and compare-and-swap are the
    store's conditional PUTs (``If-None-Match: *`` / ``If-Match``, see :mod:`skillgen.common.storage`).
    Object stores have no conditional delete, so releasing writes an expired lease, which the next
    run takes over as stale.
    """

    def __init__(self, location: Any):
        self.location = location

    def read(self) -> tuple[Lease, str] | None:
        if not self.location.exists():
            return None
        data, version = self.location.read_versioned()
        try:
            return Lease.from_bytes(data), version
        except (ValueError, TypeError) as exc:
            raise UserError(f"{self.location}: damaged lease ({exc}); if no run uses this dir, delete it") from None

    def create_exclusive(self, lease: Lease) -> str | None:
        if not self.location.create_if_absent(lease.to_bytes()):
            return None
        return self.read()[1]

    def replace_if_unchanged(self, lease: Lease | None, version: str) -> str | None:
        if lease is None:
            current = self.read()
            if current is None:
                return None
            lease = replace(current[0], ttl_s=0.0, renewed_at=0.0)  # expired: taken over as stale
        if not self.location.replace_if_unchanged(lease.to_bytes(), version):
            return None
        current = self.read()
        return current[1] if current else None


def backend_for(run_dir: Any) -> LeaseBackend:
    """The lease store of a run dir: a local file, or an object on the run dir's object store."""
    from skillgen.common.storage import resolve

    location = resolve(run_dir)
    if location.is_local:
        return LocalLeaseBackend(location.local_path / LEASE_FILE)
    return StorageLeaseBackend(location / LEASE_FILE)


def _in_use(run_dir: Any, held: Lease) -> RunDirInUse:
    return RunDirInUse(f"{run_dir} is in use by {held.describe()} (lease {LEASE_FILE}, renewed "
                       f"{max(0.0, time.time() - held.renewed_at):.0f} s ago); wait for it to finish or stop it")


class RunDirLease:
    """A held lease, renewed by a daemon thread until :meth:`release`; ``lost`` is set if it was taken away."""

    def __init__(self, backend: LeaseBackend, lease: Lease, version: str):
        self.backend = backend
        self.lease = lease
        self.version = version
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="skillgen-lease", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, run_dir: str | Path, ttl_s: float | None = None, purpose: str = "skillgen run",
                backend: LeaseBackend | None = None) -> "RunDirLease":
        """Take the run dir's lease, or raise a one-line :class:`UserError` naming the live holder.
        ``ttl_s``: default ``$SKILLGEN_LEASE_TTL_S`` or 60 s."""
        ttl_s = default_ttl_s() if ttl_s is None else ttl_s
        backend = backend or backend_for(run_dir)
        for _ in range(5):  # the file may vanish or change between our read and our write: retry
            mine = Lease.new(ttl_s, purpose)
            version = backend.create_exclusive(mine)
            if version is not None:
                return cls(backend, mine, version)
            current = backend.read()
            if current is None:
                continue
            held, held_version = current
            if not held.stale():
                raise _in_use(run_dir, held)
            version = backend.replace_if_unchanged(mine, held_version)
            if version:
                log.warning("took over the stale lease of %s on %s", held.describe(), run_dir)
                return cls(backend, mine, version)
        raise UserError(f"{run_dir}: could not take the run dir lease (others keep changing it); retry")

    @classmethod
    def check_free(cls, run_dir: str | Path, backend: LeaseBackend | None = None) -> None:
        """Read-only: :class:`RunDirInUse` if a live process holds the lease now (before anything is written;
        :meth:`acquire` decides for good)."""
        current = (backend or backend_for(run_dir)).read()
        if current is not None and not current[0].stale():
            raise _in_use(run_dir, current[0])

    def renew(self) -> bool:
        fresh = replace(self.lease, renewed_at=time.time())
        version = self.backend.replace_if_unchanged(fresh, self.version)
        if not version:
            self.lost.set()
            return False
        self.lease, self.version = fresh, version
        return True

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease.ttl_s / 3):
            try:
                if not self.renew():
                    log.error("lost the run dir lease (another process took it over); stopping")
                    return
            except OSError as exc:  # a hiccup of the filesystem: try again next period, TTL permitting
                log.warning("could not renew the run dir lease: %s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if not self.lost.is_set():
            try:
                self.backend.replace_if_unchanged(None, self.version)
            except OSError as exc:
                log.warning("could not release the run dir lease: %s", exc)

    def __enter__(self) -> "RunDirLease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
