"""How many CPUs each Ray Train worker asks for when ``cpus_per_worker`` is left to the cluster (0 = auto)."""

from __future__ import annotations

from skilltrain.training.fit import _largest_share


def test_one_worker_takes_the_whole_node():
    assert _largest_share([2], workers=1, at_most=2) == 2


def test_workers_that_must_share_one_node_split_it():
    # two workers on the only eligible node (3 CPUs): 2 each would never be scheduled
    assert _largest_share([3], workers=2, at_most=2) == 1
    assert _largest_share([8], workers=2, at_most=8) == 4


def test_workers_spread_over_nodes_and_free_cpus_cap_the_share():
    assert _largest_share([2, 3], workers=2, at_most=2) == 2
    assert _largest_share([8, 8], workers=2, at_most=3) == 3


def test_no_eligible_node_falls_back_to_one_cpu():
    assert _largest_share([], workers=2, at_most=1) == 1
