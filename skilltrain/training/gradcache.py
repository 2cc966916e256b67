"""One forward/backward of the contrastive loss, optionally with GradCache.

The loss couples every pair in the global batch, so plain gradient
accumulation does not work: a chunk's loss needs all other chunks' embeddings.
GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup") splits the step in three:

1. encode all groups in chunks *without* an autograd graph (cheap on memory);
2. compute the loss on those cached outputs (made leaves that require grad)
   and backpropagate to get d(loss)/d(output) - the only place the whole
   batch meets;
3. replay each chunk *with* a graph and backpropagate ``output . grad``;
   by the chain rule the parameter gradients equal the full-batch ones.

Step 3 must reproduce step 1's outputs exactly, so each chunk's RNG state
(dropout) is recorded in step 1 and restored in step 3. Peak activation memory
is one chunk's, whatever the batch size. ``chunk=0`` does the plain thing.

Inputs are pre-tokenised :class:`TokenGroup` s (sentences, labels[, hard
negatives]), so no tokenisation happens on the step's critical path, and every
chunk goes through the one encoder method ``BiEncoder.represent(features)``.
With GradCache the rows of a group are chunked in length order (longest first), so
each chunk pads only to texts of similar length; outputs return to the group's
row order before the loss.
Its output may be pooled ``(n, D)`` or per token ``(n, L, D)``: chunks are
concatenated along dim 0, and 3-d chunks (each trimmed to its own longest
text) are zero-padded along dim 1 to the group's length ``L``; the replay
slices the cached gradient back to the chunk's length. The loss receives the
outputs and the groups' attention masks, so a token-level loss can ignore the
padding.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from skilltrain.model import BiEncoder

#: loss_fn(outputs, masks): one output per group ((n, D) or (n, L, D), float32) and its (n, L) attention mask
LossFn = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class TokenGroup:
    """Tokenised texts of one group, padded to the group's longest: (n, L) ``input_ids`` and ``attention_mask``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.input_ids.shape[1])

    def rows(self, start: int, stop: int) -> "TokenGroup":
        """Rows ``[start, stop)``, trimmed to their own longest text (no FLOPs on padding)."""
        mask = self.attention_mask[start:stop]
        width = int(mask.sum(1).max()) if len(mask) else 0
        return TokenGroup(self.input_ids[start:stop, :width], mask[:, :width])

    def to(self, device: torch.device, non_blocking: bool = False) -> "TokenGroup":
        return TokenGroup(self.input_ids.to(device, non_blocking=non_blocking), self.attention_mask.to(device, non_blocking=non_blocking))

    def features(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}


def tokenize(encoder: BiEncoder, texts: Sequence[str]) -> TokenGroup:
    """``texts`` as a CPU :class:`TokenGroup` with the encoder's tokenizer and length limit."""
    batch = encoder.tokenizer(list(texts), padding=True, truncation=True, max_length=encoder.max_seq_length, return_tensors="pt")
    return TokenGroup(batch["input_ids"], batch["attention_mask"])


class RngState:
    """CPU (+ current CUDA device) RNG state, restorable in a forked context."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextlib.contextmanager
    def restored(self):
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def _pad_to(out: torch.Tensor, width: int) -> torch.Tensor:
    """A 3-d (n, l, D) chunk output zero-padded to (n, width, D); pooled outputs pass through."""
    return F.pad(out, (0, 0, 0, width - out.shape[1])) if out.ndim == 3 else out


def _encode(encoder: BiEncoder, group: TokenGroup, device: torch.device) -> torch.Tensor:
    return encoder.represent(group.to(device, non_blocking=True).features())


def forward_backward(
    encoder: BiEncoder,
    groups: Sequence[TokenGroup],
    loss_fn: LossFn,
    chunk: int = 0,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """Accumulate parameter gradients of ``loss_fn([represent(g) for g in groups], masks)``.

    Returns the (detached) loss. Outputs are cast to float32 and the loss is computed
    outside autocast, so bf16 only affects the encoder. Masks are on the encoder's device.
    """
    device = encoder.device
    masks = [g.attention_mask.to(device, non_blocking=True) for g in groups]
    if chunk <= 0:
        with autocast():
            outputs = [_encode(encoder, g, device) for g in groups]
        loss = loss_fn([o.float() for o in outputs], masks)
        loss.backward()
        return loss.detach()

    # length-bucketed chunks: rows sorted by length (longest first), so a chunk's texts pad to similar widths
    orders = [torch.argsort(g.attention_mask.sum(1), descending=True, stable=True) for g in groups]
    ordered = [TokenGroup(g.input_ids[o], g.attention_mask[o]) for g, o in zip(groups, orders)]
    parts_of = [[g.rows(i, i + chunk) for i in range(0, len(g), chunk)] for g in ordered]
    states: list[list[RngState]] = [[] for _ in groups]
    cached: list[torch.Tensor] = []
    with torch.no_grad():  # 1. encode without graph, remembering RNG per chunk
        for g, parts in enumerate(parts_of):
            outs = []
            for part in parts:
                states[g].append(RngState(device))
                with autocast():
                    outs.append(_pad_to(_encode(encoder, part, device).float(), groups[g].width))
            inverse = torch.argsort(orders[g]).to(device)
            cached.append(torch.cat(outs)[inverse].requires_grad_())  # back in the group's row order
    loss = loss_fn(cached, masks)  # 2. loss and d(loss)/d(outputs), float32, outside autocast
    loss.backward()
    for g, parts in enumerate(parts_of):  # 3. replay with graph, chain rule into the parameters
        for part, state, grad in zip(parts, states[g], cached[g].grad[orders[g].to(device)].split(chunk)):
            with state.restored(), autocast():
                out = _encode(encoder, part, device)
            if out.ndim == 3:
                grad = grad[:, : out.shape[1]]
            (out.float() * grad).sum().backward()
    return loss.detach()


#: ``gradcache_chunk`` value that asks for a chunk sized from free memory (:func:`chunk_for_memory`)
AUTO_CHUNK = -1


def activation_bytes_per_text(transformer: torch.nn.Module, seq_len: int, bytes_per_value: int) -> int:
    """Activation memory one text of ``seq_len`` tokens keeps for backward in a BERT-style encoder.

    Per layer ``s h (34 + 5 a s / h)`` values (Korthikanti et al. 2022, "Reducing Activation
    Recomputation in Large Transformer Models", counted in 2-byte values there), with ``s`` the
    tokens, ``h`` the width and ``a`` the attention heads.
    """
    c = transformer.config
    s, h, a = seq_len, int(c.hidden_size), int(c.num_attention_heads)
    return int(c.num_hidden_layers * s * h * (34 + 5 * a * s / h) * bytes_per_value / 2)


def free_memory_bytes(device: torch.device) -> int:
    """Free memory where the activations live: the GPU's, or the host's ``MemAvailable``."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 4 * 2**30


def chunk_for_memory(encoder: BiEncoder, texts_per_group: int, device: torch.device, bf16: bool, share: float = 0.5, sharing: int = 1) -> int:
    """The GradCache chunk whose activations fit ``share`` of the free memory (split among ``sharing`` workers).

    Sized for texts of the full ``max_seq_length`` (the worst case); 0 (GradCache off) when a
    whole group fits, since then the cached forward pass would only cost time.
    """
    per_text = activation_bytes_per_text(encoder.transformer, encoder.max_seq_length, 2 if bf16 and device.type == "cuda" else 4)
    fits = int(free_memory_bytes(device) * share / max(1, sharing) // per_text)
    return 0 if fits >= texts_per_group else max(8, fits)
