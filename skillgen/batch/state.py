"""The batch manifest: what was submitted where, so a killed driver resumes instead of paying twice.

Every step that costs money or creates something at the provider is
preceded by a record of the intent and followed by a record of its id, each
an atomic rewrite of ``<run_dir>/batch/manifest.json``:

    write input-NNNNN.jsonl + requests-NNNNN.json -> entry "intent"
    -> upload -> file_id ("uploaded") -> create batch -> batch_id (provider status)

An entry caught between two steps is reconciled with the provider (see
:mod:`skillgen.batch.api`): the upload is found again by its file name
(``skillgen-<run_id>-NNNNN.jsonl``) and the batch by its metadata, so it is
neither repeated nor lost. ``collected`` turns true only after the rows of the
batch are on disk.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from skillgen.common.errors import UserError
from skillgen.rundir.rundir import MANIFEST_FILE as MANIFEST
from skillgen.rundir.rundir import RunDir

__all__ = ["BatchEntry", "MANIFEST", "Manifest", "TERMINAL", "load_manifest", "save_manifest", "seq_name"]

TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass
class BatchEntry:
    """One input file / batch. ``tokens`` (prompt + max_tokens) is what the enqueued-token limit counts."""

    seq: int
    filename: str
    requests: int
    bytes: int
    tokens: int
    worst_case_usd: float  # held against the spend cap until the batch is collected
    status: str = "intent"  # intent | uploaded | the provider's batch status
    file_id: str | None = None
    batch_id: str | None = None
    request_counts: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    collected: bool = False
    cost_usd: float = 0.0  # billed lines, once collected
    unattributed_usd: float = 0.0  # billed lines that yielded no sentence (no row to carry their cost)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def open(self) -> bool:
        """Submitted (or about to be) and not yet collected: holds queue tokens and spend headroom."""
        return not self.collected


@dataclass
class Manifest:
    run_id: str
    entries: list[BatchEntry] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # request key -> answers (responses, line errors)
    rounds: dict[str, int] = field(default_factory=dict)  # request key -> collected batches it was in
    problems: dict[str, str] = field(default_factory=dict)  # request key -> the last thing that went wrong
    learned_token_cap: int | None = None  # from a batch failed with token_limit_exceeded

    def open_entries(self) -> list[BatchEntry]:
        return [e for e in self.entries if e.open]

    def spent_unattributed(self) -> float:
        return sum(e.unattributed_usd for e in self.entries)


def load_manifest(run_dir: RunDir, create: bool = False) -> Manifest | None:
    path = run_dir.batch_file(MANIFEST)
    if not path.exists():
        if not create:
            return None
        manifest = Manifest(run_id=uuid.uuid4().hex[:12])
        save_manifest(run_dir, manifest)
        return manifest
    try:
        raw = json.loads(path.read_text())
        entries = [BatchEntry(**e) for e in raw.pop("entries")]
        return Manifest(entries=entries, **raw)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{path}: unreadable batch manifest ({exc})") from None


def save_manifest(run_dir: RunDir, manifest: Manifest) -> None:
    run_dir.write_batch_file(MANIFEST, json.dumps(asdict(manifest), indent=2, sort_keys=True, default=str))


def seq_name(kind: str, seq: int, ext: str) -> str:
    """``<kind>-NNNNN.<ext>`` under ``<run_dir>/batch/``: input, requests, output and errors of one batch."""
    return f"{kind}-{seq:05d}.{ext}"
