"""Waits that know when objects land: the arrival model and the timed wait.

The model is pure and is fed times directly. The wait runs against the memory store: a key that
is already there but not yet due must cost exactly one GET, sent no earlier than it is due.
"""

from __future__ import annotations

import threading
import time

import pytest

from fasdl.errors import WaitTimeout
from fasdl.store import open_store
from fasdl.store.arrivals import ArrivalModel


def test_unknown_tags_are_asked_for_at_once() -> None:
    m = ArrivalModel()
    assert m.schedule("x") is None
    m.observe("x", 100.0, 100.2)
    assert m.schedule("x") is None  # one send gives no period yet


def test_a_steady_sender_is_expected_one_period_and_one_lag_after_its_last_send() -> None:
    m = ArrivalModel()
    for i in range(4):
        m.observe("p", 100.0 + i * 1.0, 100.0 + i * 1.0 + 0.1)
    s = m.schedule("p")
    assert s is not None
    assert s.first == pytest.approx(103.0 + 1.0 + 0.1)
    assert s.recheck == pytest.approx(s.first)  # nothing varies: no spread
    assert s.spread == pytest.approx(0.0)


def test_time_found_beyond_the_fastest_lag_brings_the_next_get_earlier() -> None:
    """A receiver that found objects long after they landed must not learn to wait that long."""
    m = ArrivalModel()
    lags = [0.1, 0.5, 0.5, 0.5]
    for i, lag in enumerate(lags):
        m.observe("p", 100.0 + i, 100.0 + i + lag)
    s = m.schedule("p")
    assert s is not None
    # period 1, fastest lag 0.1, found 0.4 beyond it as a rule: 0.4 earlier than period + lag
    assert s.first == pytest.approx(103.0 + (1.0 - 0.4) + 0.1)
    assert s.recheck > s.first


def test_a_repeated_or_older_send_is_ignored() -> None:
    m = ArrivalModel()
    m.observe("p", 100.0, 100.1)
    m.observe("p", 101.0, 101.1)
    before = m.schedule("p")
    m.observe("p", 101.0, 105.0)  # the same object read again (a resumed aggregator re-put it)
    m.observe("p", 99.0, 105.0)
    assert m.schedule("p") == before


def test_a_key_there_but_not_due_costs_one_get_sent_when_due() -> None:
    store = open_store("memory://arrivals-due")
    store.put("a", b"1")
    store.put("b", b"2")
    store.counter.reset()
    start = time.monotonic()
    got = store.wait_all_timed(["a", "b"], 30.0, expected_s=[0.0, 0.3])
    assert got.blobs == [b"1", b"2"]
    assert store.requests["GET"] == 2
    assert [a.probes for a in got.arrivals] == [1, 1]
    assert got.arrivals[1].found_s >= 0.3
    assert time.monotonic() - start >= 0.3


def test_a_key_that_misses_when_due_is_asked_again_at_its_recheck_time() -> None:
    store = open_store("memory://arrivals-recheck")
    landed = threading.Event()

    def put_later() -> None:
        # lands once the wait's first GET has missed (the counter shows it), never before
        deadline = time.monotonic() + 30
        while store.requests["GET"] < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        store.put("late", b"x")
        landed.set()

    t = threading.Thread(target=put_later)
    t.start()
    got = store.wait_all_timed(
        ["late"], 30.0, expected_s=[0.0], recheck_s=[0.2], poll_initial_s=0.002
    )
    t.join()
    assert landed.is_set() and got.blobs == [b"x"]
    # the first GET missed, the second was not sent before the recheck time, and found it
    assert got.arrivals[0].probes == 2
    assert got.arrivals[0].found_s >= 0.2


def test_a_wait_with_hints_still_gives_up_at_its_deadline_naming_the_key() -> None:
    store = open_store("memory://arrivals-timeout")
    with pytest.raises(WaitTimeout, match="piece from worker 3"):
        store.wait_all_timed(
            ["never"], 0.3, what=["piece from worker 3"], expected_s=[5.0], recheck_s=[6.0]
        )


def test_hints_must_match_the_keys() -> None:
    store = open_store("memory://arrivals-bad")
    with pytest.raises(ValueError, match="2 arrival times for 1 keys"):
        store.wait_all_timed(["k"], 1.0, expected_s=[0.0, 1.0])
