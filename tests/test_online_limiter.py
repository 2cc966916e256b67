"""The rate limiter on its own: every method takes ``now``, so time is a number here (no Ray, no clock)."""

import pytest

from skillgen.online.limiter import Bucket, RateLimiter, RateLimits


def test_a_bucket_refills_at_its_limit_per_minute_and_never_above_it():
    b = Bucket(600, now=0.0)
    b.move(-600)
    assert b.wait_for(100) == pytest.approx(10.0)  # 10 tokens/s
    b.refill(5.0)
    assert b.level == pytest.approx(50)
    b.refill(1000.0)
    assert b.level == 600
    b.move(+100)
    assert b.level == 600  # a credit never lifts it above the limit
    assert b.wait_for(10_000) == 0.0  # full: a request larger than the limit waits for a full bucket only
    assert Bucket(None, now=0.0).wait_for(10**9) == 0.0  # no limit: never waits


def test_the_binding_limit_is_counted_and_taking_debits_every_bucket():
    lim = RateLimiter(RateLimits(rpm=2, tpm=1000, input_tpm=600, output_tpm=500), now=0.0)
    assert lim.wait_for(100, 400) == 0.0
    assert lim.take(100, 400) == 500 and lim.take(100, 400) == 1000  # the mark: tokens taken so far
    assert (lim.requests.level, lim.tokens.level, lim.input.level, lim.output.level) == (0, 0, 400, -300)
    assert lim.wait_for(100, 400) > 0 and set(lim.stats.wait_by_limit) == {"output"}  # output binds longest
    lim.give_back(100, 400)
    assert (lim.requests.level, lim.tokens.level, lim.output.level) == (1, 500, 100)


def test_reconcile_gives_back_the_prompt_estimate_and_completion_only_where_usage_is_billed():
    strict = RateLimiter(RateLimits(tpm=10_000), now=0.0)
    strict.take(500, 1000)
    strict.reconcile(500, 1000, prompt_tokens=400, completion_tokens=200)
    assert strict.tokens.level == 8600
    billed = RateLimiter(RateLimits(tpm=10_000, refund_completion=True), now=0.0)
    billed.take(500, 1000)
    billed.reconcile(500, 1000, prompt_tokens=500, completion_tokens=200)
    assert billed.tokens.level == 9300


def test_a_429_pauses_everyone_for_its_retry_after():
    lim = RateLimiter(RateLimits(rpm=100), now=0.0)
    lim.pause(2.5, now=10.0)
    assert lim.cooldown(11.0) == pytest.approx(1.5) and lim.cooldown(12.5) == 0.0
    lim.pause(None, now=20.0)  # no Retry-After: one second
    assert lim.cooldown(20.0) == pytest.approx(1.0) and lim.stats.rate_limited == 2


def test_headers_tighten_by_what_the_server_had_not_seen_and_learn_unconfigured_limits():
    lim = RateLimiter(RateLimits(tpm=60_000), now=0.0)
    mark = lim.take(100, 900)
    lim.take(100, 900)  # sent after the first: the first's headers do not count it
    lim.observe({"x-ratelimit-remaining-tokens": "40000"}, sent_at=0.0, mark=mark, requests_after=1, now=0.0)
    assert lim.tokens.level == pytest.approx(39_000) and lim.stats.header_tightenings == 1
    lim.observe({"x-ratelimit-remaining-tokens": "59000"}, sent_at=0.0, mark=mark, requests_after=1, now=0.0)
    assert lim.tokens.level == pytest.approx(39_000)  # a looser view never loosens
    learner = RateLimiter(RateLimits(), now=0.0)
    learner.observe({"X-RateLimit-Limit-Requests": "120", "x-ratelimit-limit-tokens": "junk"}, 0.0, 0.0, 0, now=0.0)
    assert learner.requests.limit == 120 and learner.tokens.limit is None
    fixed = RateLimiter(RateLimits(rpm=10, learn_limits=True), now=0.0)
    fixed.observe({"x-ratelimit-limit-requests": "120"}, 0.0, 0.0, 0, now=0.0)
    assert fixed.requests.limit == 10  # a configured limit is the user's word
