"""Sentence encoders for extraction: one interface, several ways to run the same weights.

Extraction is inference only, so it may trade a little precision for speed
where training and ``skilltrain eval`` may not. Every backend returns unit-norm
embeddings of the same bi-encoder (mean pooling + L2 norm) as a torch tensor:

- ``torch-fp32``: the reference (what ``skilltrain eval`` scores).
- ``torch-bf16``: bfloat16 autocast (matmuls in bf16, LayerNorm/softmax/pooling in fp32;
  casting the weights themselves to bf16 cost 0.4 RP@5 on HOUSE test, autocast does not).
- ``torch-fp16``: weights in float16, for GPUs.
- ``onnx-fp32``: ONNX Runtime with full graph optimisation (attention/GELU/LayerNorm fusion).

int8 dynamic quantisation is not offered: it was faster but lost 0.8-1.1 RP@5
on HOUSE (BENCHMARKS.md), over the 0.3 every backend must keep.

The ONNX graph is exported from the torch weights on first use and cached
next to the skill index (one file per model fingerprint), so a user never
runs an export step by hand. ``onnxruntime`` is an optional extra
(``pip install esco-skillgen[fast]``); without it an ONNX backend falls back
to ``torch-fp32`` with a one-line note, so the plain install keeps working.

Sentences are sorted by length before batching, so a batch pads to its own
longest sentence, not the corpus's.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from skillgen.common import write_atomic
from skillgen.common import UserError
from skilltrain.extraction.backend_names import (
    BACKENDS, DEFAULT_CPU_BACKEND, DEFAULT_CPU_BATCH, DEFAULT_GPU_BACKEND, DEFAULT_GPU_BATCH,
)
from skilltrain.model import BiEncoder, mean_pool
from skilltrain.packed import PackedQueries, Queries, pack_hidden, tokenizer_positions
from skilltrain.scoring import ScoringConfig, attended_mask

log = logging.getLogger(__name__)

ONNX_DIR_NAME = "onnx"
#: backend -> (weight dtype, autocast dtype or None)
_TORCH_DTYPES = {
    "torch-fp32": (torch.float32, None),
    "torch-bf16": (torch.float32, torch.bfloat16),
    "torch-fp16": (torch.float16, None),
}


class SentenceEncoder(Protocol):
    """Texts -> unit-norm pooled embeddings (n x dim tensor on ``device``), or the model's ranking queries."""

    backend: str
    dim: int
    device: torch.device
    scoring: ScoringConfig
    max_seq_length: int  # tokens per sentence; longer ones are truncated

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...

    def encode_queries(self, texts: Sequence[str]) -> Queries:
        """What ranking scores: :meth:`encode` for a pooled model; for token attention, one forward pass gives
        :class:`~skilltrain.packed.PackedQueries`: attended tokens, the pooled vector, and (fast tokenisers) each
        token's character span and word, for evidence."""


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"``: cuda when available, else cpu."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is visible to torch here")
    return resolved


def default_backend(device: torch.device) -> str:
    return DEFAULT_GPU_BACKEND if device.type == "cuda" else DEFAULT_CPU_BACKEND


def default_batch_size(device: torch.device) -> int:
    """Small batches on CPU (less padding, cache-sized activations), large ones to fill a GPU."""
    return DEFAULT_GPU_BATCH if device.type == "cuda" else DEFAULT_CPU_BATCH


def onnxruntime_available() -> bool:
    """onnxruntime runs the graph; onnx is what exporting it needs."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_backend(backend: str, device: torch.device) -> str:
    """The backend that will actually run: ONNX needs onnxruntime and runs on CPU here."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if backend.startswith("onnx"):
        if device.type != "cpu":
            raise UserError(f"--backend {backend} runs on CPU only; use torch-fp16 or torch-bf16 on {device.type}")
        if not onnxruntime_available():
            print(f"skilltrain: note: {backend} needs onnxruntime and onnx (pip install 'esco-skillgen[fast]'); using torch-fp32",
                  file=sys.stderr)
            return "torch-fp32"
    return backend


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Longest first, so each batch pads to about its own length (and the first batch shows peak memory)."""
    return np.argsort([-len(t) for t in texts], kind="stable")


@dataclass
class TorchEncoder:
    """The bi-encoder in torch, weights in ``dtype`` on ``device``."""

    model: BiEncoder
    backend: str
    batch_size: int
    autocast: torch.dtype | None = None

    @classmethod
    def create(cls, model: BiEncoder, backend: str, device: torch.device, batch_size: int) -> "TorchEncoder":
        weights, autocast = _TORCH_DTYPES[backend]
        model.transformer.to(device=device, dtype=weights)
        model.eval()
        return cls(model, backend, batch_size, autocast)

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def scoring(self) -> ScoringConfig:
        return self.model.scoring

    @property
    def max_seq_length(self) -> int:
        return self.model.max_seq_length

    def _hidden(self, texts: Sequence[str], positions: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple]:
        """(last hidden state, model inputs, (offsets, word ids) when ``positions`` and the tokeniser is fast)."""
        batch = tokenize(self.model.tokenizer, texts, self.model.max_seq_length, "pt", positions)
        spans = tokenizer_positions(batch, len(texts))
        features = {k: v.to(self.device) for k, v in batch.items() if k != "offset_mapping"}
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return self.model.transformer(**features).last_hidden_state.float(), features, spans

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        order = length_order(texts)
        out = torch.empty((len(texts), self.dim), dtype=torch.float32, device=self.device)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            hidden, features, _ = self._hidden([texts[i] for i in idx])
            pooled = mean_pool(hidden, features["attention_mask"])
            out[torch.from_numpy(idx).to(self.device)] = F.normalize(pooled, p=2, dim=-1)
        return out

    @torch.inference_mode()
    def encode_queries(self, texts: Sequence[str]) -> Queries:
        if not self.scoring.token_level:
            return self.encode(texts)
        order = length_order(texts)
        parts = []
        for start in range(0, len(texts), self.batch_size):
            hidden, features, (offsets, words) = self._hidden([texts[i] for i in order[start : start + self.batch_size]], True)
            attended = self.model.attended(features["input_ids"], features["attention_mask"])
            parts.append(pack_hidden(hidden, features["attention_mask"], attended, self.scoring.attention_temperature, offsets, words))
        return _unsort(parts, order)


#: ONNX Runtime session entries per thread-spinning policy. Extraction uses ``during-run``: intra-op threads
#: spin between the operators of a Run (ONNX Runtime's default) and stop when it returns, so they do not take
#: the cores from the ranking that follows. Two-stage extraction against plain sentence-transformers on the
#: 2-core box (``benchmarks/bench_ort_spinning.py``, BENCHMARKS.md "Extraction"), quiet: synthetic 1.08x
#: ``during-run``, 1.05x ``never`` (used from 2026-11-30 to 2026-12-07), 0.98x ``always``; test sentences 1.55x,
#: 1.47x, 1.38x. Under two CPU burners ``never`` can be ahead (synthetic 1.42x against 1.30x; test 1.47x against
#: 1.52x): a box shared with other work may want ``never``.
SPINNING = {"never": {"session.intra_op.allow_spinning": "0"},
            "always": {"session.intra_op.allow_spinning": "1"},
            "during-run": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}}


def session_options(threads: int, spinning: str = "during-run"):
    """ONNX Runtime session options for extraction: every graph optimisation, ``threads`` intra-op threads, quiet logs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    for key, value in SPINNING[spinning].items():
        options.add_session_config_entry(key, value)
    return options


@dataclass
class OnnxEncoder:
    """The bi-encoder as an optimised ONNX Runtime session (CPU); pooling and norm in numpy."""

    session: object
    tokenizer: object
    max_seq_length: int
    backend: str
    dim: int
    batch_size: int
    scoring: ScoringConfig = ScoringConfig()
    device: torch.device = torch.device("cpu")

    @classmethod
    def create(cls, model: BiEncoder, backend: str, graph: Path, batch_size: int, threads: int | None = None) -> "OnnxEncoder":
        import onnxruntime as ort

        options = session_options(threads or torch.get_num_threads())
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        return cls(session, model.tokenizer, model.max_seq_length, backend, model.dim, batch_size, model.scoring)

    def _hidden(self, texts: Sequence[str], positions: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray], tuple]:
        """(last hidden state, tokeniser outputs, (offsets, word ids) when ``positions`` and the tokeniser is fast)."""
        names = {i.name for i in self.session.get_inputs()}
        batch = tokenize(self.tokenizer, texts, self.max_seq_length, "np", positions)
        feeds = {k: v.astype(np.int64) for k, v in batch.items() if k in names}
        return self.session.run(None, feeds)[0], batch, tokenizer_positions(batch, len(texts))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        order = length_order(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            hidden, batch, _ = self._hidden([texts[i] for i in idx])
            mask = batch["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return torch.from_numpy(out)

    def encode_queries(self, texts: Sequence[str]) -> Queries:
        if not self.scoring.token_level:
            return self.encode(texts)
        order = length_order(texts)
        special = self.tokenizer.all_special_ids if self.scoring.exclude_special_tokens else None
        parts = []
        for start in range(0, len(texts), self.batch_size):
            hidden, batch, (offsets, words) = self._hidden([texts[i] for i in order[start : start + self.batch_size]], True)
            attention = torch.from_numpy(batch["attention_mask"])
            attended = attended_mask(torch.from_numpy(batch["input_ids"]), attention, special)
            parts.append(pack_hidden(torch.from_numpy(hidden), attention, attended, self.scoring.attention_temperature, offsets, words))
        return _unsort(parts, order)


def tokenize(tokenizer, texts: Sequence[str], max_length: int, tensors: str, positions: bool):
    """A padded, truncated batch; with ``positions``, also each token's character offsets (fast tokenisers)."""
    offsets = positions and getattr(tokenizer, "is_fast", False)
    return tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors=tensors,
                     return_offsets_mapping=offsets)


def _unsort(parts: list[PackedQueries], order: np.ndarray) -> PackedQueries:
    """Length-sorted batches of packed queries back in input order (nothing padded)."""
    merged = PackedQueries.concat(parts)
    return merged[torch.from_numpy(np.argsort(order, kind="stable")).to(merged.tokens.device)]


class _LastHiddenState(torch.nn.Module):
    """What the ONNX graph computes: token embeddings (pooling stays outside, shared with torch)."""

    def __init__(self, transformer: torch.nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.transformer(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


def export_onnx(model: BiEncoder, path: Path) -> Path:
    """Export the fp32 transformer with dynamic batch and sequence axes (atomic write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    features = model.tokenize(["a short sentence to trace", "another one"])
    names = ["input_ids", "attention_mask", "token_type_ids"]
    if "token_type_ids" not in features:
        features["token_type_ids"] = torch.zeros_like(features["input_ids"])
    wrapper = _LastHiddenState(model.transformer.float().cpu()).eval()

    def export(tmp: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shape checks that are constant for an encoder
            torch.onnx.export(
                wrapper, tuple(features[n] for n in names), str(tmp), input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names + ["last_hidden_state"]}, opset_version=17, dynamo=False,
            )

    return write_atomic(path, export)


def onnx_graph(model: BiEncoder, cache_dir: Path, fingerprint: str) -> Path:
    """The cached ONNX graph of ``model``, exported on first use."""
    graph = cache_dir / ONNX_DIR_NAME / f"{fingerprint}-fp32.onnx"
    if not graph.exists():
        log.info("exporting the encoder to ONNX: %s", graph)
        export_onnx(model, graph)
    return graph


def load_sentence_encoder(
    model: BiEncoder,
    backend: str,
    device: torch.device,
    batch_size: int,
    cache_dir: Path,
    fingerprint: str,
) -> SentenceEncoder:
    """Wrap ``model`` (already loaded, fp32) as ``backend``; ``model`` is moved/cast in place for torch backends."""
    if backend.startswith("onnx"):
        return OnnxEncoder.create(model, backend, onnx_graph(model, cache_dir, fingerprint), batch_size)
    return TorchEncoder.create(model, backend, device, batch_size)
