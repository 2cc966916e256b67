"""One forward/backward of the contrastive loss, optionally with GradCache.

The loss couples every pair in the global batch, so plain gradient
accumulation does not work: a chunk's loss needs all other chunks' embeddings.
GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup") splits the step in three:

1. embed all texts in chunks *without* an autograd graph (cheap on memory);
2. compute the loss on those cached embeddings (made leaves that require grad)
   and backpropagate to get d(loss)/d(embedding) - the only place the whole
   batch meets, and it is just (B, D) matrices;
3. replay each chunk *with* a graph and backpropagate ``embedding . grad``;
   by the chain rule the parameter gradients equal the full-batch ones.

Step 3 must reproduce step 1's embeddings exactly, so each chunk's RNG state
(dropout) is recorded in step 1 and restored in step 3. Peak activation memory
is one chunk's, whatever the batch size. ``chunk=0`` does the plain thing.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch

from skilltrain.model import BiEncoder

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


def _chunks(texts: Sequence[str], size: int) -> list[list[str]]:
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def forward_backward(
    encoder: BiEncoder,
    sentences: Sequence[str],
    labels: Sequence[str],
    loss_fn: LossFn,
    chunk: int = 0,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    negatives: Sequence[str] = (),
) -> torch.Tensor:
    """Accumulate parameter gradients of ``loss_fn(embed(sentences), embed(labels)[, embed(negatives)])``.

    Returns the (detached) loss. ``negatives`` (hard-negative label texts) is a third
    group, passed to ``loss_fn`` only when non-empty. Embeddings are cast to float32
    and the loss is computed outside autocast, so bf16 only affects the encoder.
    """
    groups = [sentences, labels] + ([negatives] if len(negatives) else [])
    if chunk <= 0:
        with autocast():
            embedded = [encoder.embed(list(g)) for g in groups]
        loss = loss_fn(*[e.float() for e in embedded])
        loss.backward()
        return loss.detach()

    device = encoder.device
    parts_of = [_chunks(g, chunk) for g in groups]
    states: list[list[RngState]] = [[] for _ in groups]
    cached: list[torch.Tensor] = []
    with torch.no_grad():  # 1. embed without graph, remembering RNG per chunk
        for g, parts in enumerate(parts_of):
            outs = []
            for part in parts:
                states[g].append(RngState(device))
                with autocast():
                    outs.append(encoder.embed(part).float())
            cached.append(torch.cat(outs).requires_grad_())
    loss = loss_fn(*cached)  # 2. loss and d(loss)/d(embeddings), float32, outside autocast
    loss.backward()
    for g, parts in enumerate(parts_of):  # 3. replay with graph, chain rule into the parameters
        grads = cached[g].grad.split(chunk)
        for part, state, grad in zip(parts, states[g], grads):
            with state.restored(), autocast():
                emb = encoder.embed(part)
            (emb.float() * grad).sum().backward()
    return loss.detach()
