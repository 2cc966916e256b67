"""The budget (rate limiter + spend guard + length model, composed) with a fake clock (no Ray, no network)."""

import pytest

from skillgen.llm.pricing import Price
from skillgen.online.budget import Budget
from skillgen.online.lengths import LengthModel
from skillgen.online.limiter import RateLimiter, RateLimits, parse_reset
from skillgen.online.messages import Settlement
from skillgen.online.spend import SpendGuard


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def budget(clock: Clock, price: Price = Price(0.0, 0.0), cap: float | None = None, spent_before: float = 0.0,
           **limits) -> Budget:
    """A budget without a ledger: ``limits`` are :class:`RateLimits` fields, ``price`` in USD per 1M tokens."""
    return Budget(SpendGuard(price, cap=cap, spent_before=spent_before), RateLimiter(RateLimits(**limits), clock()),
                  clock=clock)


def test_parse_reset_formats():
    assert parse_reset("1s") == 1.0
    assert parse_reset("6m0s") == 360.0
    assert parse_reset("120ms") == pytest.approx(0.12)
    assert parse_reset("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_reset("0.5") == 0.5
    assert parse_reset(None) is None and parse_reset("junk") is None


def test_token_bucket_grants_prefix_and_waits():
    c = Clock()
    b = budget(c, tpm=6000)
    out = b.reserve("w", [(100, 1900)] * 4)  # 2000 each, 6000 available
    assert len(out.granted) == 3
    assert out.wait == pytest.approx(2000 / 100)  # refills 100 tokens/s
    c.t += 10
    assert b.reserve("w", [(100, 1900)]).granted == []
    c.t += 10
    assert len(b.reserve("w", [(100, 1900)]).granted) == 1


def test_rpm_bucket():
    c = Clock()
    b = budget(c, rpm=60)
    assert len(b.reserve("w", [(1, 1)] * 100).granted) == 60
    c.t += 1.0
    assert len(b.reserve("w", [(1, 1)] * 10).granted) == 1


def test_reconcile_prompt_estimate_but_not_completion_by_default():
    c = Clock()
    b = budget(c, tpm=10000)
    rid = b.reserve("w", [(500, 1000)]).granted[0]
    assert b.limiter.tokens.level == 8500
    b.settle(Settlement(rid, status=200, prompt_tokens=400, completion_tokens=200, sentences_requested=10))
    assert b.limiter.tokens.level == 8600  # prompt over-estimate returned, max_tokens stays debited
    b2 = budget(c, tpm=10000, refund_completion=True)
    rid = b2.reserve("w", [(500, 1000)]).granted[0]
    b2.settle(Settlement(rid, status=200, prompt_tokens=500, completion_tokens=200))
    assert b2.limiter.tokens.level == 9300  # 800 unused completion tokens refunded


def test_429_cooldown_and_refund():
    c = Clock()
    b = budget(c, tpm=10000)
    rid = b.reserve("w", [(100, 900)]).granted[0]
    b.settle(Settlement(rid, status=429, retry_after=2.0))
    assert b.limiter.tokens.level == 10000
    out = b.reserve("w", [(100, 900)])
    assert out.granted == [] and out.wait == pytest.approx(2.0)
    c.t += 2.01
    assert len(b.reserve("w", [(100, 900)]).granted) == 1


def test_headers_tighten_never_loosen_and_learn_limit():
    c = Clock()
    b = budget(c, tpm=60000)
    rid = b.reserve("w", [(100, 900)]).granted[0]
    assert b.limiter.tokens.level == 59000
    b.settle(Settlement(rid, status=200, prompt_tokens=100, completion_tokens=10,
                        headers={"x-ratelimit-remaining-tokens": "30000"}))
    assert b.limiter.tokens.level == pytest.approx(30000)
    rid = b.reserve("w", [(100, 900)]).granted[0]
    b.settle(Settlement(rid, status=200, prompt_tokens=100, completion_tokens=10,
                        headers={"x-ratelimit-remaining-tokens": "59000"}))
    assert b.limiter.tokens.level == pytest.approx(29000)  # looser server view is ignored
    # limits learned from headers when not configured
    b3 = budget(c)
    rid = b3.reserve("w", [(100, 900)]).granted[0]
    b3.settle(Settlement(rid, status=200, prompt_tokens=100, completion_tokens=10,
                         headers={"x-ratelimit-limit-tokens": "5000", "x-ratelimit-remaining-tokens": "4000",
                                  "x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "99"}))
    assert b3.limiter.tokens.limit == 5000 and b3.limiter.requests.limit == 100
    assert b3.limiter.tokens.level <= 4000


def test_headers_account_for_reservations_made_after_the_request():
    c = Clock()
    b = budget(c, tpm=60000)
    first = b.reserve("w", [(100, 900)]).granted[0]
    b.reserve("w", [(100, 900)] * 5)  # 5 more sent before the first answers
    assert b.limiter.tokens.level == 54000
    # server saw only the first: remaining 59000 -> consistent, no tightening
    b.settle(Settlement(first, status=200, prompt_tokens=100, completion_tokens=10,
                        headers={"x-ratelimit-remaining-tokens": "59000"}))
    assert b.limiter.tokens.level == pytest.approx(54000)


def test_spend_cap_stops_new_requests_and_lets_inflight_settle():
    c = Clock()
    # $1 per 1M in and out: a request of 1000+1000 tokens costs at most $0.002
    b = budget(c, Price(1.0, 1.0), cap=0.005)
    out = b.reserve("w", [(1000, 1000)] * 5)
    assert len(out.granted) == 2 and out.stop is None
    for rid in out.granted:
        b.settle(Settlement(rid, status=200, prompt_tokens=1000, completion_tokens=1000))
    out = b.reserve("w", [(1000, 1000)])
    assert out.granted == [] and out.stop == "spend cap"
    assert b.guard.spent() == pytest.approx(0.004)
    # spend before (earlier invocations) counts
    b2 = budget(c, Price(1.0, 1.0), cap=0.005, spent_before=0.004)
    assert b2.reserve("w", [(1000, 1000)]).stop == "spend cap"


def test_length_model_quantile():
    m = LengthModel(quantile=0.99, min_samples=10)
    for i in range(9):
        m.add(300, 10)
    assert m.per_sentence() is None
    for i in range(91):
        m.add(300 + i, 10)
    assert 38 <= m.per_sentence() <= 39.1
    assert m.max_tokens_for(10, 1000) == pytest.approx(39 * 10 * 1.15 + 16, abs=15)
    assert m.max_tokens_for(10, 100) == 100
