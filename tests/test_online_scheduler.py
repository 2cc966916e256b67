"""The scheduler's rules without Ray: leases, exactly-once acceptance, reassignment, stop, drain."""

from __future__ import annotations

from helpers.online_fakes import failure, row, task

from skillgen.online.messages import WorkerReport
from skillgen.online.scheduler import Scheduler
from skillgen.summary import RequestCounters


def state(s: Scheduler, name: str):
    """One field of :meth:`Scheduler.state`."""
    return getattr(s.state(), name)


def keys(chunk) -> list[str]:
    return [t.request_key for t in chunk.tasks]


def test_chunks_hand_out_skills_in_order_and_lease_them():
    s = Scheduler([task(i) for i in range(5)], n_sentences=3)
    first = s.next_chunk("w1", 2)
    assert keys(first) == ["k0", "k1"] and first.stop is None and first.queued == 3
    assert keys(s.next_chunk("w2", 2)) == ["k2", "k3"]
    assert keys(s.next_chunk("w1", 5)) == ["k4"]
    assert s.next_chunk("w2", 5).tasks == []
    assert state(s, "leased") == 5 and state(s, "queued") == 0 and state(s, "finished") == 0


def test_each_sample_index_is_accepted_once_late_and_foreign_reports_are_dropped():
    s = Scheduler([task(0), task(1)], n_sentences=3)
    s.next_chunk("w1", 2)
    s.report("w1", WorkerReport(rows=[row("k0", 0), row("k0", 1)]))
    # a duplicate index, an index the task never asked for, an unknown key, a row for a finished skill
    s.report("w1", WorkerReport(rows=[row("k0", 0, "again"), row("k0", 7), row("nope", 0)], done=["k1"]))
    s.report("w1", WorkerReport(rows=[row("k1", 0)]))
    drained = s.drain()
    assert [r.slot for r in drained.rows] == [("k0", 0), ("k0", 1)]
    assert state(s, "duplicates_dropped") == 4
    assert state(s, "sentences") == 2
    assert s.drain().rows == []  # drained once


def test_a_dead_workers_unfinished_skills_go_back_first_with_only_what_is_missing():
    s = Scheduler([task(0), task(1), task(2), task(3)], n_sentences=3)
    s.next_chunk("w1", 2)  # k0, k1
    s.report("w1", WorkerReport(rows=[row("k0", 1, "kept sentence")], done=["k1"]))
    assert s.release_worker("w1") == 1  # k1 is done: only k0 returns
    assert state(s, "reassigned") == 1
    again = s.next_chunk("w2", 1)
    assert keys(again) == ["k0"]
    assert again.tasks[0].missing == (0, 2)
    assert again.tasks[0].avoid == ("kept sentence",)
    assert s.release_worker("w-never-seen") == 0


def test_released_keys_return_only_from_their_own_lease():
    s = Scheduler([task(0), task(1)], n_sentences=3)
    s.next_chunk("w1", 1)  # k0
    s.next_chunk("w2", 1)  # k1
    s.report("w1", WorkerReport(released=["k0", "k1"]))  # k1 is w2's: ignored
    assert keys(s.next_chunk("w3", 5)) == ["k0"]


def test_a_failure_finishes_the_skill_once_and_later_rows_are_dropped():
    s = Scheduler([task(0), task(1)], n_sentences=2)
    s.next_chunk("w1", 2)
    s.report("w1", WorkerReport(failures=[failure("k0")]))
    s.report("w1", WorkerReport(rows=[row("k0", 0)], failures=[failure("k0", "timeout")]))
    drained = s.drain()
    assert drained.rows == [] and [f.error_class for f in drained.failures] == ["validation"]
    assert state(s, "failed") == 1 and state(s, "finished") == 1
    assert s.release_worker("w1") == 1  # k1 only: the failed skill is finished


def test_a_skill_completed_elsewhere_is_skipped_when_it_comes_round_again():
    s = Scheduler([task(0, n=2), task(1, n=2)], n_sentences=2)
    s.next_chunk("w1", 1)
    s.release_worker("w1")  # k0 back at the front ...
    s.report("w1", WorkerReport(rows=[row("k0", 0), row("k0", 1)]))  # ... but its rows arrive late
    assert keys(s.next_chunk("w2", 2)) == ["k1"]
    assert state(s, "finished") == 1


def test_the_report_piggy_backed_on_a_chunk_request_counts_before_the_handout():
    s = Scheduler([task(0, n=1), task(1, n=1)], n_sentences=1)
    s.next_chunk("w1", 1)
    s.release_worker("w1")
    chunk = s.next_chunk("w1", 2, WorkerReport(rows=[row("k0", 0)], done=["k0"]))
    assert keys(chunk) == ["k1"]


def test_stop_ends_the_handout_and_the_first_reason_wins():
    s = Scheduler([task(i) for i in range(3)], n_sentences=3)
    s.next_chunk("w1", 1)
    s.stop("spend cap reached")
    s.stop("later reason")
    chunk = s.next_chunk("w1", 2)
    assert chunk.tasks == [] and chunk.stop == "spend cap reached"
    assert state(s, "stopped") == "spend cap reached" and state(s, "queued") == 2


def test_state_sums_numeric_worker_stats_and_drain_carries_it():
    s = Scheduler([task(0)], n_sentences=3)
    s.report("w1", WorkerReport(stats=RequestCounters(requests=2, cost_usd=0.5)))
    s.report("w2", WorkerReport(stats=RequestCounters(requests=3, cost_usd=0.25)))
    s.report("w1", WorkerReport(stats=RequestCounters(requests=4, cost_usd=0.5)))  # latest per worker, not a sum over time
    assert state(s, "workers") == RequestCounters(requests=7, cost_usd=0.75)
    assert s.drain().state.workers == RequestCounters(requests=7, cost_usd=0.75)
    assert state(s, "total") == 1
