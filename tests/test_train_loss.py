"""The distributed loss and GradCache give exactly the single-process gradients.

2 workers: torch.distributed with gloo on loopback, spawned with
torch.multiprocessing, running the exact step code the trainer uses
(:func:`skilltrain.training.train.step_gradients`, through ``helpers.training``). Dropout is off (eval mode) so
both sides see the same function; GradCache's RNG replay is tested separately
with dropout on.
"""

from __future__ import annotations

import pytest
import torch

from helpers.training import assert_two_ranks_equal_one_process, grads_of, make_batch, one_process_gradients

from skilltrain.training.gradcache import forward_backward, tokenize
from skilltrain.training.loss import contrastive_loss, false_negative_mask, label_side_mask
from skilltrain.model import BiEncoder


def test_two_workers_equal_one_worker_on_concatenated_batch(tiny_encoder_dir, tmp_path):
    # run 2 ranks with GradCache: the chunked, gathered path must equal one process on the whole batch
    assert_two_ranks_equal_one_process(tiny_encoder_dir, tmp_path, chunk=4)


def test_gradcache_chunks_equal_full_batch(tiny_encoder_dir):
    batch = make_batch(n=24)
    loss_full, full = one_process_gradients(tiny_encoder_dir, batch, chunk=0)
    loss_gc, gc = one_process_gradients(tiny_encoder_dir, batch, chunk=8)
    assert abs(loss_full - loss_gc) < 1e-5
    diff = max((gc[k] - full[k]).abs().max().item() for k in full)
    assert diff < 1e-5, diff


def test_gradcache_replay_restores_dropout_rng(tiny_encoder_dir):
    """With dropout on, the replayed chunks must see the same masks as the cached pass."""
    encoder = BiEncoder.from_pretrained(tiny_encoder_dir).train()
    for m in encoder.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
    batch = make_batch(n=16)
    seen: list[torch.Tensor] = []

    def loss_fn(outputs, masks):
        seen.append(outputs[0].detach().clone())
        return contrastive_loss(*outputs, torch.as_tensor(batch.cls), torch.as_tensor(batch.partner_cls))

    original_embed, original_represent = encoder.embed, encoder.represent
    replayed: list[torch.Tensor] = []

    def spy(features):
        out = original_represent(features)
        if torch.is_grad_enabled():
            replayed.append(out.detach().clone())
        return out

    encoder.represent = spy
    torch.manual_seed(0)
    sentences = tokenize(encoder, batch.texts)
    forward_backward(encoder, [sentences, tokenize(encoder, batch.labels)], loss_fn, chunk=4)
    sentence_replay = torch.cat(replayed[:4])  # chunks run in length order, longest first
    order = torch.argsort(sentences.attention_mask.sum(1), descending=True, stable=True)
    assert torch.allclose(sentence_replay, seen[0][order], atol=1e-6)
    # and dropout really was active (two plain passes differ)
    with torch.no_grad():
        assert not torch.allclose(original_embed(batch.texts[:4]), original_embed(batch.texts[:4]))


def test_mask_never_uses_partner_or_same_skill_as_negative():
    # rows: 0..5; row 1 is the same skill as row 0 (what the sampler should prevent), row 2 joined with skill of row 3
    cls = torch.tensor([7, 7, 2, 3, 4, 5])
    partner = torch.tensor([-1, -1, 3, -1, 5, -1])
    mask = false_negative_mask(cls, partner)
    assert not mask.diagonal().any()
    assert mask[0, 1] and mask[1, 0]  # same skill: neither is the other's negative
    assert mask[2, 3]  # sentence 2 contains a sentence of skill 3: label 3 is not its negative
    assert mask.T[3, 2]  # ... and in the skill->sentence direction, sentence 2 is not label 3's negative
    assert mask[4, 5] and not mask[5, 4]
    assert mask.sum() == 4
    # the label side, built per rank, is exactly the transpose; and a rank's rows are the full mask's rows
    assert torch.equal(label_side_mask(cls, partner, slice(0, 6)), mask.T)
    assert torch.equal(false_negative_mask(cls, partner, slice(2, 4)), mask[2:4])
    assert torch.equal(label_side_mask(cls, partner, slice(2, 4)), mask.T[2:4])

    # the masked entries carry no gradient and do not change the loss
    torch.manual_seed(0)
    s = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1).requires_grad_()
    l_ = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1).requires_grad_()
    loss = contrastive_loss(s, l_, cls, partner)
    loss.backward()
    logits = 20 * s.detach() @ l_.detach().T
    ref_rows = []
    for i in range(6):
        keep = ~mask[i]
        ref_rows.append(-(logits[i, i] - torch.logsumexp(logits[i][keep], 0)))
    ref_cols = []
    for j in range(6):
        keep = ~mask.T[j]
        ref_cols.append(-(logits[j, j] - torch.logsumexp(logits[:, j][keep], 0)))
    ref = (torch.stack(ref_rows).mean() + torch.stack(ref_cols).mean()) / 2
    assert torch.allclose(loss, ref, atol=1e-5)


def test_scale_and_asymmetric_match_mnrl_formula():
    torch.manual_seed(1)
    s = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    l_ = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    cls, partner = torch.arange(5), torch.full((5,), -1)
    loss = contrastive_loss(s, l_, cls, partner, scale=20.0, symmetric=False)
    ref = torch.nn.functional.cross_entropy(20 * s @ l_.T, torch.arange(5))
    assert torch.allclose(loss, ref, atol=1e-6)


def test_gradcache_token_level_outputs_equal_full_batch(tiny_encoder_dir):
    """A 3-d (n, L, D) represent: chunks padded to the group's length, replay sliced back; gradients unchanged."""
    import torch.nn.functional as F

    batch = make_batch(n=12)

    def token_represent(self, features):
        out = self.transformer(**features).last_hidden_state
        return F.normalize(out, dim=-1)

    def loss_fn(outputs, masks):
        sentences, labels = outputs
        assert sentences.ndim == 3 and sentences.shape[:2] == masks[0].shape and labels.ndim == 3
        pooled = (labels * masks[1].unsqueeze(-1)).sum(1) / masks[1].sum(1, keepdim=True)
        scores = torch.einsum("nld,md->nml", sentences, pooled).masked_fill(~masks[0].bool().unsqueeze(1), -1e4)
        return torch.nn.functional.cross_entropy(20 * scores.max(-1).values, torch.arange(len(scores)))

    results = []
    for chunk in (0, 4):
        encoder = BiEncoder.from_pretrained(tiny_encoder_dir).eval()
        encoder.represent = token_represent.__get__(encoder)
        loss = forward_backward(encoder, [tokenize(encoder, batch.texts), tokenize(encoder, batch.labels)], loss_fn, chunk=chunk)
        results.append((float(loss), grads_of(encoder)))
    (loss_full, full), (loss_gc, gc) = results
    assert abs(loss_full - loss_gc) < 1e-5
    assert max((gc[k] - full[k]).abs().max().item() for k in full) < 1e-5
