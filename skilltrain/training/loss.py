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
gradients across workers (:func:`skilltrain.training.distributed.allreduce_gradients`)
rather than averaging them as DDP would. ``tests/test_train_loss.py`` checks 2 workers == 1 worker.

False negatives are masked to -inf: another row of the same class (the sampler
prevents this, the mask is the safety net) and the class of an augmentation
partner joined to the anchor (see :mod:`skilltrain.training.augment`).

Optional mined hard negatives (``TrainConfig.hard_negatives``) are extra label
columns, gathered like the positives and shared by every row, as in
sentence-transformers' MNRL with (anchor, positive, negative) triples. A
negative column is masked for a row whose own class or partner class it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F

from skilltrain.scoring import TokenQueries, token_attention_scores
from skilltrain.training.distributed import gather_with_grad, world

if TYPE_CHECKING:
    from skilltrain.model import BiEncoder
    from skilltrain.training.gradcache import TokenGroup


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


def negative_mask(cls: torch.Tensor, partner_cls: torch.Tensor, neg_cls: torch.Tensor, rows: slice) -> torch.Tensor:
    """(R, N) bool: True where hard-negative column j is row i's own class or its partner's (never a negative)."""
    cls, partner_cls, neg_cls = cls.view(-1)[rows], partner_cls.view(-1)[rows], neg_cls.view(-1)
    return (cls.unsqueeze(1) == neg_cls.unsqueeze(0)) | (partner_cls.unsqueeze(1) == neg_cls.unsqueeze(0))


def contrastive_loss(
    sentences: torch.Tensor,
    labels: torch.Tensor,
    cls: torch.Tensor,
    partner_cls: torch.Tensor,
    scale: float = 20.0,
    symmetric: bool = True,
    negatives: torch.Tensor | None = None,
    neg_cls: torch.Tensor | None = None,
) -> torch.Tensor:
    """This rank's share of the global-batch loss.

    ``sentences``/``labels``: (B, D) unit-norm local embeddings, row i a positive pair.
    ``cls``/``partner_cls``: (W*B,) class ids of the *global* batch (every rank knows
    them: the batch plan is deterministic). ``negatives``: optional (B*k, D) local
    hard-negative label embeddings, ``neg_cls`` their (W*B*k,) global class ids; they
    add columns to the sentence->skill direction only. Returns sum_i CE_i / (W*B),
    halved and summed over both directions when ``symmetric``.
    """
    rank, _ = world()
    rows = sentences.shape[0]
    all_sentences = gather_with_grad(sentences)
    all_labels = gather_with_grad(labels)
    total = all_sentences.shape[0]
    cls, partner_cls = cls.to(sentences.device), partner_cls.to(sentences.device)
    local = slice(rank * rows, (rank + 1) * rows)
    target = torch.arange(local.start, local.stop, device=sentences.device)

    columns, mask = label_columns(all_labels, negatives, cls, partner_cls, neg_cls, local)
    logits = scale * sentences @ columns.T  # my sentences x all labels (+ all hard negatives)
    loss = F.cross_entropy(logits.masked_fill(mask, float("-inf")), target, reduction="sum")
    if symmetric:
        logits_t = scale * labels @ all_sentences.T  # my labels x all sentences
        loss = (loss + label_side_loss(logits_t, cls, partner_cls, local, target)) / 2
    return loss / total


def label_columns(all_labels, negatives, cls, partner_cls, neg_cls, local: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """The sentence->skill direction's columns (all labels, then all hard negatives) and their false-negative mask."""
    columns, mask = all_labels, false_negative_mask(cls, partner_cls, local)
    if negatives is not None and negatives.shape[0] > 0:
        columns = torch.cat([all_labels, gather_with_grad(negatives)])
        mask = torch.cat([mask, negative_mask(cls, partner_cls, neg_cls.to(all_labels.device), local)], dim=1)
    return columns, mask


def label_side_loss(logits_t: torch.Tensor, cls, partner_cls, local: slice, target: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of the skill->sentence direction: my labels' rows over all sentences, false negatives masked."""
    mask_t = label_side_mask(cls, partner_cls, local)
    return F.cross_entropy(logits_t.masked_fill(mask_t, float("-inf")), target, reduction="sum")


def token_attention_loss(
    sentences: TokenQueries,
    labels: torch.Tensor,
    cls: torch.Tensor,
    partner_cls: torch.Tensor,
    scale: float = 20.0,
    symmetric: bool = True,
    negatives: torch.Tensor | None = None,
    neg_cls: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`contrastive_loss` with token-attention scores (ConTeXT-match) in place of cosines.

    ``sentences``: this rank's B sentences as :class:`~skilltrain.scoring.TokenQueries`
    (tokens (B, L, D), mask, attention temperature); ``labels``: (B, D) unit pooled
    label embeddings; the rest as for :func:`contrastive_loss`.

    What crosses workers: the score of sentence i with skill j needs i's tokens and j's
    pooled vector. The sentence->skill direction (my sentences x all skills) gathers
    the *labels*, as the pooled loss does. The skill->sentence direction (my skills x
    all sentences) would need every worker's token tensors (W x B x L x D, ragged L);
    instead each worker's (B, W*B) score block is gathered (gradient-carrying): the
    full score matrix is W*B x W*B scalars, and my skills' column of it is exactly the
    other direction. Backward through that gather sums every rank's gradient for my
    block, so the invariant holds: the sum of local losses is the single-process loss.
    """
    rank, _ = world()
    rows = labels.shape[0]
    all_labels = gather_with_grad(labels)
    total = all_labels.shape[0]
    cls, partner_cls = cls.to(labels.device), partner_cls.to(labels.device)
    local = slice(rank * rows, (rank + 1) * rows)
    target = torch.arange(local.start, local.stop, device=labels.device)

    columns, mask = label_columns(all_labels, negatives, cls, partner_cls, neg_cls, local)
    block = token_attention_scores(sentences.tokens, sentences.mask, columns, sentences.temperature)  # (B, W*B [+ N])
    loss = F.cross_entropy((scale * block).masked_fill(mask, float("-inf")), target, reduction="sum")
    if symmetric:
        full = gather_with_grad(block[:, :total].contiguous())  # (W*B, W*B): every sentence x every label
        logits_t = scale * full[:, local].T  # my labels x all sentences
        loss = (loss + label_side_loss(logits_t, cls, partner_cls, local, target)) / 2
    return loss / total


def _pooled(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unit mean-pooled embeddings of (n, L, D) token outputs: what ``BiEncoder.forward`` computes."""
    from skilltrain.model import mean_pool

    return F.normalize(mean_pool(tokens, mask), p=2, dim=-1)


def loss_fn_for(
    encoder: "BiEncoder",
    groups: Sequence["TokenGroup"],
    cls: torch.Tensor,
    partner_cls: torch.Tensor,
    neg_cls: torch.Tensor,
    scale: float = 20.0,
    symmetric: bool = True,
) -> Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]:
    """The ``loss_fn(outputs, masks)`` GradCache calls, for the encoder's scoring.

    ``groups``: sentences, labels[, hard negatives], as ``encoder.represent`` sees them.
    Pooled: outputs are unit vectors, :func:`contrastive_loss`. Token attention: every
    output is (n, L, D) token embeddings; labels (and negatives) are mean-pooled here,
    sentences keep their attended tokens (:meth:`BiEncoder.attended`), :func:`token_attention_loss`.
    """
    with_negatives = len(groups) > 2
    if not encoder.scoring.token_level:
        def pooled_loss(outputs, masks):
            return contrastive_loss(outputs[0], outputs[1], cls, partner_cls, scale, symmetric,
                                    outputs[2] if with_negatives else None, neg_cls)
        return pooled_loss

    attended = encoder.attended(groups[0].input_ids, groups[0].attention_mask).to(encoder.device)
    temperature = encoder.scoring.attention_temperature

    def token_loss(outputs, masks):
        tokens = outputs[0] * attended.unsqueeze(-1).to(outputs[0].dtype)
        queries = TokenQueries(tokens, attended, temperature)
        negatives = _pooled(outputs[2], masks[2]) if with_negatives else None
        return token_attention_loss(queries, _pooled(outputs[1], masks[1]), cls, partner_cls, scale, symmetric, negatives, neg_cls)
    return token_loss
