"""The spend guard on its own: the cap at the worst case, every grant and outcome in a real ledger (no Ray)."""

from pathlib import Path

import pytest

from skillgen.llm.pricing import Price
from skillgen.online.spend import Attempt, SpendGuard
from skillgen.rundir.ledger import LedgerWriter, Outcome, ledger_totals, read_ledger

PRICE = Price(1.0, 2.0)  # USD per 1M tokens: a 1000 + 1000 token request costs at most $0.003


def attempt(i: int, prompt: int = 1000, completion: int = 1000) -> Attempt:
    return Attempt(f"a{i}", f"k{i}", 1, "w0", prompt, completion)


def test_the_cap_counts_spend_before_settled_and_in_flight_at_the_worst_case():
    guard = SpendGuard(PRICE, cap=0.010, spent_before=0.002)
    worst = guard.worst_case(1000, 1000)
    assert worst == pytest.approx(0.003) and guard.admits(worst)
    guard.sent(attempt(1))
    guard.sent(attempt(2))
    assert not guard.admits(worst)  # 0.002 + 2 x 0.003 in flight + 0.003 > 0.010
    guard.settled(attempt(1), Outcome.CLIENT_ERROR)  # rejected: $0
    assert guard.admits(worst) and guard.spent() == pytest.approx(0.002)
    assert SpendGuard(PRICE).admits(1e9)  # no cap


@pytest.mark.parametrize("policy, expected", [("worst_case", 0.003), ("prompt_only", 0.001), ("free", 0.0)])
def test_an_unknown_outcome_is_priced_by_the_policy(policy, expected):
    guard = SpendGuard(PRICE, policy=policy)
    guard.sent(attempt(1))
    assert guard.settled(attempt(1), Outcome.TIMEOUT) == pytest.approx(expected)
    assert guard.spent() == pytest.approx(expected)


def test_a_bad_policy_fails_at_once():
    with pytest.raises(ValueError, match="unknown_outcome"):
        SpendGuard(PRICE, policy="cheap")  # type: ignore[arg-type]


def test_a_200_is_held_at_its_worst_case_until_its_rows_are_persisted(tmp_path: Path):
    ledger = LedgerWriter(tmp_path)
    guard = SpendGuard(PRICE, cap=0.0055, ledger=ledger)
    a = attempt(1)
    guard.sent(a)
    cost = guard.settled(a, Outcome.OK, prompt_tokens=1000, completion_tokens=10)
    ledger.flush()
    assert cost == pytest.approx(0.00102) and guard.holding
    assert read_ledger(tmp_path)["outcome"].to_list() == ["unknown"]  # not yet "received"
    assert not guard.admits(0.003)  # 0.00102 + held margin 0.00198 + 0.003 > 0.0055
    assert guard.persisted(guard.settle_seq) == 1 and not guard.holding
    ledger.flush()
    assert guard.admits(0.003)
    totals = ledger_totals(tmp_path)
    assert totals.by_outcome == {"200": 1} and totals.known_usd == pytest.approx(cost)
    assert (totals.prompt_tokens, totals.completion_tokens) == (guard.prompt_tokens, guard.completion_tokens) == (1000, 10)


def test_every_grant_is_a_sent_event_with_its_worst_case_and_outcomes_follow(tmp_path: Path):
    ledger = LedgerWriter(tmp_path)
    guard = SpendGuard(PRICE, ledger=ledger)
    for i in range(3):
        guard.sent(attempt(i, prompt=500))
    guard.settled(attempt(0, prompt=500), Outcome.RATE_LIMITED)
    guard.settled(attempt(1, prompt=500), Outcome.WORKER_LOST)
    ledger.flush()
    frame = read_ledger(tmp_path).sort("attempt_id")
    assert frame["attempt_id"].to_list() == ["a0", "a1", "a2"]
    assert frame["worst_cost_usd"].to_list() == pytest.approx([0.0025] * 3)
    assert frame["prompt_only_cost_usd"].to_list() == pytest.approx([0.0005] * 3)
    assert frame["outcome"].to_list() == ["429", "worker_lost", "unknown"]
    assert guard.attempt_id(7).endswith("-7") and SpendGuard(PRICE).attempt_id(7) != guard.attempt_id(7)
