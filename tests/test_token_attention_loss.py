"""Token-attention scoring (ConTeXT-match) trains with exactly the single-process loss and gradients.

As for the pooled loss (tests/test_train_loss.py): 2 gloo workers on loopback with
GradCache == one process on the whole batch, to 1e-5, with and without hard
negatives; and the loss equals a hand-written reference of the formula.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from skilltrain.model import BiEncoder
from skilltrain.scoring import ScoringConfig, TokenQueries, token_attention_scores
from skilltrain.training.loss import false_negative_mask, token_attention_loss
from helpers.training import assert_two_ranks_equal_one_process, compute_gradients, make_batch, one_process_gradients

TOKEN = ScoringConfig("token_attention", attention_temperature=0.5)


def reference_scores(tokens: torch.Tensor, mask: torch.Tensor, skills: torch.Tensor, temperature: float) -> torch.Tensor:
    """The formula, one (sentence, skill) pair at a time."""
    out = torch.empty(tokens.shape[0], skills.shape[0])
    for i in range(tokens.shape[0]):
        x = tokens[i][mask[i]]
        for j in range(skills.shape[0]):
            weights = torch.softmax(x @ skills[j] / temperature, dim=0)
            out[i, j] = (weights * F.cosine_similarity(x, skills[j].unsqueeze(0), dim=-1)).sum()
    return out


def test_scores_match_the_formula_and_ignore_padding():
    torch.manual_seed(0)
    tokens = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    skills = F.normalize(torch.randn(4, 8), dim=-1)
    got = token_attention_scores(tokens, mask, skills, 0.7)
    assert torch.allclose(got, reference_scores(tokens, mask, skills, 0.7), atol=1e-5)
    garbage = tokens.clone()
    garbage[~mask] = 1e3  # whatever sits at padded positions does not count
    assert torch.allclose(token_attention_scores(garbage, mask, skills, 0.7), got, atol=1e-6)
    # a single token: the score is its cosine; a very high temperature: the mean cosine
    assert torch.allclose(got[2], F.cosine_similarity(tokens[2, :1], skills, dim=-1), atol=1e-5)


def test_loss_matches_the_symmetric_infonce_reference():
    torch.manual_seed(1)
    cls = torch.tensor([0, 1, 2, 3, 4, 5])
    partner = torch.tensor([-1, 3, -1, -1, 0, -1])
    tokens, mask = torch.randn(6, 4, 8), torch.ones(6, 4, dtype=torch.bool)
    mask[0, 3] = mask[2, 2:] = False
    labels = F.normalize(torch.randn(6, 8), dim=-1)
    loss = token_attention_loss(TokenQueries(tokens, mask, 0.5), labels, cls, partner, scale=20.0)
    logits = 20 * reference_scores(tokens, mask, labels, 0.5)
    masked = logits.masked_fill(false_negative_mask(cls, partner), float("-inf"))
    ref = (F.cross_entropy(masked, torch.arange(6)) + F.cross_entropy(masked.T, torch.arange(6))) / 2
    assert torch.allclose(loss, ref, atol=1e-5)


@pytest.mark.slow  # ~10 s: 2 gloo ranks; test_train_loss.py keeps the pooled loss's check by default; .ci/run runs it (the default suite stays under 6 min)
def test_two_workers_with_gradcache_equal_one_process(tiny_encoder_dir, tmp_path):
    assert_two_ranks_equal_one_process(tiny_encoder_dir, tmp_path, chunk=4, scoring=TOKEN)


def test_gradcache_equals_full_batch_and_differs_from_pooled(tiny_encoder_dir):
    batch = make_batch(n=24, negatives=1)
    loss_full, full = one_process_gradients(tiny_encoder_dir, batch, chunk=0, scoring=TOKEN)
    loss_gc, gc = one_process_gradients(tiny_encoder_dir, batch, chunk=8, scoring=TOKEN)
    assert abs(loss_full - loss_gc) < 1e-5
    assert max((gc[k] - full[k]).abs().max().item() for k in full) < 1e-5
    pooled = BiEncoder.from_pretrained(tiny_encoder_dir).eval()
    assert abs(compute_gradients(pooled, batch, len(batch.texts), 20.0, True, 0) - loss_full) > 1e-3  # really another loss
