"""What a run dir already holds, so a rerun pays only for what is missing.

A skill's work is identified by its *request key* (hash of skill id, prompt
version, model, sampling parameters and sentences per skill). Persistence is
per sentence: every accepted sentence is a row ``(skill_id, sample_idx)`` as
soon as its response arrives, so paid sentences are kept even if the skill
later needs a follow-up request. A skill is finished when it has
``n_sentences`` rows, or a failure record (unless ``retry_failures``); on a
rerun only the missing ``sample_idx`` values are requested, and the prompt
lists the sentences already kept so the model does not repeat them.

``run.json`` holds the config (never a secret: configs only name the env
var), its fingerprint and a history of invocations. A rerun with a
different fingerprint is refused: mixing outputs of two prompts or models in
one dataset would silently corrupt it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from skillgen.llm.client import RUN_STOPPING
from skillgen.config import GenerationConfig
from skillgen.common.storage import Location, resolve
from skillgen.common.errors import UserError
from skillgen.common.outputs import check_writable_path
from skillgen.rundir.sinks import FAILURES_DIR, ROWS_DIR, _read_folder, FAILURE_SCHEMA, read_rows, utcnow

__all__ = ["Progress", "RUN_JSON", "check_writable", "load_progress", "open_run_json", "read_run_json",
           "record_invocation", "request_key"]

RUN_JSON = "run.json"


def request_key(config: GenerationConfig, skill_id: str) -> str:
    blob = json.dumps(
        {
            "skill_id": skill_id,
            "prompt_version": config.prompt_version,
            "model": config.model,
            "sampling": config.sampling_params(),
            "n": config.n_sentences,
            "alts": [config.include_alt_labels, config.max_alt_labels],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _write_json_atomic(path: Location, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def check_writable(run_dir: str | Path | Location) -> None:
    run_dir = resolve(run_dir)
    if run_dir.is_local:  # a file where the folder goes, or under it: said so, not "File exists"
        check_writable_path(run_dir.local_path, "--run-dir", "dir")
    try:
        run_dir.mkdir()
        probe = run_dir / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.delete()
        for sub in (ROWS_DIR, FAILURES_DIR):
            (run_dir / sub).mkdir()
    except OSError as exc:
        first = (getattr(exc, "strerror", None) or str(exc)).strip().splitlines()[0]
        raise UserError(f"run dir {run_dir} is not writable ({first})") from None


def read_run_json(run_dir: str | Path | Location) -> dict[str, Any] | None:
    path = resolve(run_dir) / RUN_JSON
    try:
        if not path.exists():
            return None
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: damaged run metadata ({exc}); restore it from a backup, or copy run.json from "
                        "a run dir made with the same config") from None


class FingerprintMismatch(UserError):
    """The run dir holds work made with other output-shaping settings (model, prompt, sampling, -n).

    ``differences`` maps each field to (run dir's value, this config's value); :meth:`describe` words them
    with the names the user typed (a CLI passes its flags, the pipeline its TOML keys).
    """

    def __init__(self, run_dir: Any, differences: dict[str, tuple[Any, Any]], fingerprints: tuple[str, str]):
        self.run_dir, self.differences, self.fingerprints = run_dir, differences, fingerprints
        super().__init__(self.describe())

    def describe(self, names: dict[str, str] | None = None) -> str:
        names = names or {}
        what = "; ".join(f"{names.get(k, k)} {_shown(old)} -> {_shown(new)}" for k, (old, new) in self.differences.items())
        return (f"{self.run_dir} holds a run with a different model/prompt/sampling "
                f"({what or 'fingerprint %s != %s' % self.fingerprints}); use a new --run-dir or the original settings")


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def check_fingerprint(run_dir: Location, meta: dict[str, Any] | None, config: GenerationConfig) -> None:
    """Refuse (:class:`FingerprintMismatch`) a run dir whose run.json has another fingerprint."""
    fp = config.fingerprint()
    if meta is None or meta.get("fingerprint") == fp:
        return
    before = meta.get("config") or {}
    differences = {k: (before.get(k), v) for k, v in config.output_fields().items() if k in before and before[k] != v}
    raise FingerprintMismatch(run_dir, differences, (str(meta.get("fingerprint")), fp))


def open_run_json(run_dir: Location, config: GenerationConfig, takeover: bool = False) -> dict[str, Any]:
    """Create or update ``run.json`` for ``config``; refuse a different fingerprint, unless ``takeover``: the
    run dir holds no work (no row, failure record or ledger entry; a run refused before sending anything, by
    an older version, left it), so it is not a different run and a corrected rerun starts it afresh.
    Called by :meth:`skillgen.rundir.rundir.RunDir.open` under the lease. Returns run.json content."""
    meta = read_run_json(run_dir)
    fp = config.fingerprint()
    if meta is not None and meta.get("fingerprint") != fp and takeover:
        meta = None
    check_fingerprint(run_dir, meta, config)
    now = utcnow().isoformat()
    if meta is None:
        meta = {"created_at": now, "fingerprint": fp, "history": []}
    meta.update({"config": config.public_dict(), "fingerprint": fp, "prompt_version": config.prompt_version, "updated_at": now})
    _write_json_atomic(run_dir / RUN_JSON, meta)
    return meta


def record_invocation(run_dir: Location, entry: dict[str, Any]) -> None:
    path = resolve(run_dir) / RUN_JSON
    meta = read_run_json(run_dir) or {}
    meta.setdefault("history", []).append(entry)
    meta["updated_at"] = utcnow().isoformat()
    _write_json_atomic(path, meta)


@dataclass
class Progress:
    """Per request key: sentences kept by sample_idx; keys with failure records; answers (200s) the ledger
    holds, which a request's seed counts so that a resumed skill does not replay an earlier request.
    (Spend: RunDir.spend.)"""

    have: dict[str, dict[int, str]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    answered: dict[str, int] = field(default_factory=dict)
    rows: int = 0


def load_progress(run_dir: Location) -> Progress:
    rows = read_rows(run_dir, dedupe=True)
    failures = _read_folder(resolve(run_dir) / FAILURES_DIR, FAILURE_SCHEMA)
    prog = Progress()
    for key, idx, sentence in rows.select("request_key", "sample_idx", "sentence").iter_rows():
        prog.have.setdefault(key, {})[int(idx)] = sentence
    prog.rows = rows.height
    # A failure caused by the account or endpoint (bad key, no quota, unknown model) says nothing
    # about the skill: once the user fixes the cause, a plain rerun must retry it, not skip it.
    skill_failures = failures.filter(~pl.col("error_class").is_in(sorted(RUN_STOPPING)))
    prog.failed = set(skill_failures["request_key"].to_list())
    prog.answered = answers_by_key(run_dir)
    return prog


def answers_by_key(run_dir: Location) -> dict[str, int]:
    """How many answered (HTTP 200) attempts the ledger holds per request key, in either mode. Online
    follow-ups are ledgered as ``<key>:<answers>:<slots>``, batch lines under the key itself."""
    from skillgen.rundir.ledger import Outcome, read_ledger

    ok = read_ledger(resolve(run_dir)).filter(pl.col("outcome") == Outcome.OK.value)
    keys = ok.select(pl.col("request_key").str.split(":").list.first().alias("key")).group_by("key").len()
    return {key: int(n) for key, n in keys.iter_rows()}
