"""RP@K and MRR on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from skilltrain.evaluation.metrics import bootstrap_ci, rp_at_k, reciprocal_rank, score_rankings, top_k_indices


def test_rp_at_k_with_fewer_gold_than_k():
    # gold {3, 9}; top 5 holds only 3 -> 1 / min(5, 2)
    assert rp_at_k([3, 1, 2, 4, 5, 9], {3, 9}, 5) == pytest.approx(0.5)


def test_rp_at_k_with_more_gold_than_k():
    # 6 gold, top 5 holds 4 of them -> 4 / min(5, 6)
    assert rp_at_k([0, 1, 7, 2, 3, 4], {0, 1, 2, 3, 4, 5}, 5) == pytest.approx(0.8)


def test_no_hit_scores_zero():
    assert rp_at_k([1, 2, 3], {9}, 1) == 0.0
    assert reciprocal_rank([1, 2, 3], {9}) == 0.0


def test_mrr_uses_first_gold():
    assert reciprocal_rank([5, 7, 2, 1], {2, 1}) == pytest.approx(1 / 3)


def test_ties_keep_lower_index_first():
    scores = np.array([[0.5, 0.9, 0.9, 0.1]])
    assert top_k_indices(scores, 3).tolist() == [[1, 2, 0]]
    # gold at index 2 is tied with index 1 and ranked after it: rank 2, RP@1 = 0
    report = score_rankings(scores, [{2}], ks=(1, 5))
    assert report.per_sentence["RP@1"].tolist() == [0.0]
    assert report.per_sentence["MRR"].tolist() == [0.5]


def test_score_rankings_matches_list_definitions_on_random_data():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(30, 200))
    gold = [set(rng.choice(200, size=rng.integers(1, 8), replace=False).tolist()) for _ in range(30)]
    report = score_rankings(scores, gold)
    for row in range(30):
        ranked = np.argsort(-scores[row], kind="stable").tolist()
        for k in (1, 5, 10):
            assert report.per_sentence[f"RP@{k}"][row] == pytest.approx(rp_at_k(ranked, gold[row], k))
        assert report.per_sentence["MRR"][row] == pytest.approx(reciprocal_rank(ranked, gold[row]))
    means = report.means()
    assert means["RP@5"] == pytest.approx(report.per_sentence["RP@5"].mean() * 100)


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_n():
    values = np.array([0.0, 1.0] * 50)
    lo, hi = bootstrap_ci(values)
    assert lo < 50.0 < hi
    lo2, hi2 = bootstrap_ci(np.array([0.0, 1.0] * 500))
    assert hi2 - lo2 < hi - lo


def test_ties_at_the_cut_keep_the_lowest_indices():
    # five skills tie for places 2-6; top 3 must be the best one and the two lowest tied indices
    scores = np.array([[0.2, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.1]] * 3)
    assert top_k_indices(scores, 3).tolist() == [[3, 1, 2]] * 3


def test_top_k_equals_a_stable_full_sort_on_heavily_tied_scores():
    scores = np.round(np.random.default_rng(0).random((20, 200)), 1)  # 11 distinct values: ties everywhere
    expected = np.argsort(-scores, axis=-1, kind="stable")[:, :10]
    assert (top_k_indices(scores, 10) == expected).all()
