"""Symmetric InfoNCE (multiple-negatives ranking loss) over a global in-batch pool.

The paper's point is many negatives: every sentence is scored against every
skill label in the batch (MNRL, Henderson et al. 2017; scale 20 as in
sentence-transformers' ``MultipleNegativesRankingLoss``), and, symmetric, every
label against every sentence. With W workers of B pairs each, the pool is the
*global* batch of W x B: embeddings are all-gathered with a gradient-carrying
gather, each worker scores its B local rows against the W x B global columns,
and normalises by the global batch, so

    sum over workers of the local losses == the single-process loss on the
    concatenated batch,

and their gradients add up the same way. The trainer therefore SUMs parameter
gradients across workers (:func:`allreduce_gradients`) rather than averaging
them as DDP would. ``tests/test_train_loss.py`` checks 2 workers == 1 worker.

False negatives are masked to -inf: another row of the same class (the sampler
prevents this, the mask is the safety net) and the class of an augmentation
partner joined to the anchor (see :mod:`skilltrain.training.augment`).
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    Each rank's loss depends on all ranks' embeddings, so the gradient of the
    total loss w.r.t. my embeddings is the sum over ranks of d(loss_r)/d(mine):
    an all_reduce of the full gradient, then my slice. (all_reduce rather than
    reduce_scatter because gloo lacks the latter.) Equal slice sizes assumed.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        ctx.rank, ctx.rows = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenation of ``x`` over all ranks (rank order), differentiable; ``x`` alone when single-process."""
    return x if world()[1] == 1 else _GatherWithGrad.apply(x)


def false_negative_mask(cls: torch.Tensor, partner_cls: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
    """(R, G) bool: True where sentence row i (of ``rows``, default all G) must not be scored against label column j.

    Masked: j != i and (label j is of i's class, or of the class of i's augmentation partner).
    Only this rank's rows are built, so the mask grows with the local batch times the global
    one, never with the global batch squared.
    """
    cls, partner_cls = cls.view(-1), partner_cls.view(-1)
    rows = rows or slice(0, len(cls))
    own = torch.arange(len(cls), device=cls.device)[rows]
    mask = (cls[rows].unsqueeze(1) == cls.unsqueeze(0)) | (partner_cls[rows].unsqueeze(1) == cls.unsqueeze(0))
    mask[torch.arange(len(own), device=cls.device), own] = False
    return mask


def label_side_mask(cls: torch.Tensor, partner_cls: torch.Tensor, rows: slice) -> torch.Tensor:
    """The skill->sentence direction: rows of the transpose of :func:`false_negative_mask` for label rows ``rows``."""
    cls, partner_cls = cls.view(-1), partner_cls.view(-1)
    own = torch.arange(len(cls), device=cls.device)[rows]
    mask = (cls[rows].unsqueeze(1) == cls.unsqueeze(0)) | (cls[rows].unsqueeze(1) == partner_cls.unsqueeze(0))
    mask[torch.arange(len(own), device=cls.device), own] = False
    return mask


def contrastive_loss(
    sentences: torch.Tensor,
    labels: torch.Tensor,
    cls: torch.Tensor,
    partner_cls: torch.Tensor,
    scale: float = 20.0,
    symmetric: bool = True,
) -> torch.Tensor:
    """This rank's share of the global-batch loss.

    ``sentences``/``labels``: (B, D) unit-norm local embeddings, row i a positive pair.
    ``cls``/``partner_cls``: (W*B,) class ids of the *global* batch (every rank knows
    them: the batch plan is deterministic). Returns sum_i CE_i / (W*B), halved and
    summed over both directions when ``symmetric``.
    """
    rank, _ = world()
    rows = sentences.shape[0]
    all_sentences = gather_with_grad(sentences)
    all_labels = gather_with_grad(labels)
    total = all_sentences.shape[0]
    cls, partner_cls = cls.to(sentences.device), partner_cls.to(sentences.device)
    local = slice(rank * rows, (rank + 1) * rows)
    target = torch.arange(local.start, local.stop, device=sentences.device)

    logits = scale * sentences @ all_labels.T  # my sentences x all labels
    mask = false_negative_mask(cls, partner_cls, local)
    loss = F.cross_entropy(logits.masked_fill(mask, float("-inf")), target, reduction="sum")
    if symmetric:
        logits_t = scale * labels @ all_sentences.T  # my labels x all sentences
        mask_t = label_side_mask(cls, partner_cls, local)
        loss_t = F.cross_entropy(logits_t.masked_fill(mask_t, float("-inf")), target, reduction="sum")
        loss = (loss + loss_t) / 2
    return loss / total


def allreduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """SUM gradients over ranks in one flat buffer (each rank holds its share of the global loss's gradient)."""
    if world()[1] == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def allreduce_sum(value: float, device: torch.device | str = "cpu") -> float:
    """Sum of a scalar over ranks (our local losses are shares, so this is the global loss)."""
    if world()[1] == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())
