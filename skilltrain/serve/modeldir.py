"""The model directory a replica serves: found on local disk or fetched from object storage, and described.

A cluster's nodes share no disk, so a model on ``s3://`` is copied to each node's cache
(``~/.cache/skillgen/serve-models/<key>``, ``$SKILLGEN_CACHE_DIR``). The key is the URI plus the
listing's names, sizes and modification times: a replica restarted on the same node reuses the copy
and its skill index (built once, ~15 s of CPU for 13,896 labels), and a model rewritten under the
same URI is fetched again. Two replicas fetching at once each download into their own temp folder;
the first rename wins and the second one's copy is dropped.

:func:`model_info` is what ``GET /v1/model`` answers: read from the files ``skilltrain fit`` writes
(``skilltrain_config.json``, ``eval_results.json``, ``skilltrain_scoring.json``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from skillgen.common import BUNDLED_ESCO_VERSION, UserError, file_sha256, is_bundled_esco, is_uri, resolve
from skilltrain.cache import user_cache_dir
from skilltrain.model import EVAL_RESULTS_FILE, TRAINING_CONFIG_FILE, check_encoder_dir
from skilltrain.scoring import ScoringConfig

CACHE_FOLDER = "serve-models"


def local_model_dir(model: str) -> Path:
    """A local encoder directory for ``model``: a path or name as it is, a URI fetched into the node's cache."""
    if not is_uri(model):
        return check_encoder_dir(model)
    where = resolve(model, "model")
    target = user_cache_dir() / CACHE_FOLDER / _listing_key(where)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{target.name}.", dir=target.parent) as tmp:
            where.download_dir(Path(tmp) / "model")
            try:
                (Path(tmp) / "model").rename(target)
            except OSError:  # another replica on this node renamed its copy first
                if not target.exists():
                    raise
    return check_encoder_dir(target)


def _listing_key(where: Any) -> str:
    import pyarrow.fs as pafs

    infos = where.fs.get_file_info(pafs.FileSelector(where.path, recursive=True, allow_not_found=True))
    files = sorted((i.path, i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File)
    if not files:
        raise UserError(f"{where}: model directory is empty or does not exist")
    digest = hashlib.sha256(json.dumps([where.uri, files]).encode()).hexdigest()[:20]
    return f"{where.name}-{digest}"


def model_info(model: str, local_dir: Path, taxonomy: Path, n_skills: int, backend: str, device: str,
               max_seq_length: int) -> dict[str, Any]:
    """Base encoder, scoring, taxonomy, versions and saved scores of a model directory (``GET /v1/model``)."""
    training = _read_json(local_dir / TRAINING_CONFIG_FILE)
    results = _read_json(local_dir / EVAL_RESULTS_FILE)
    return {
        "model": model,
        # TrainConfig.model: a dir or a name; None = the bundled MiniLM
        "base_encoder": (training.get("model") or "minilm") if training else None,
        "trained": training is not None,
        "scoring": asdict(ScoringConfig.load(local_dir)),
        "taxonomy": taxonomy_info(taxonomy, n_skills),
        "version": _package_version(),
        "backend": backend,
        "device": device,
        "max_seq_length": max_seq_length,
        "best_step": (results or {}).get("best_step"),
        "validation": (results or {}).get("validation"),
        "test": (results or {}).get("test"),
    }


def taxonomy_info(path: Path, n_skills: int) -> dict[str, Any]:
    """File name, content hash, skill count, and the ESCO version when it is the bundled taxonomy."""
    version = BUNDLED_ESCO_VERSION if is_bundled_esco(path) else None
    return {"file": Path(path).name, "sha256": file_sha256(path), "skills": n_skills, "esco_version": version}


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _package_version() -> str | None:
    try:
        return metadata.version("esco-skillgen")
    except metadata.PackageNotFoundError:
        return None

