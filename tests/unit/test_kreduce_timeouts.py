"""The peer-wait timeout: derived from the job and the measured iterations, unless given."""

from __future__ import annotations

import pytest

from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.logs import IterationLog
from fasdl.kreduce.timeouts import (
    FACTOR,
    FLOOR_S,
    RECENT_ITERATIONS,
    START_FLOOR_S,
    PeerTimeouts,
    first_iteration_bound_s,
    peer_wait_s,
    pessimistic_bandwidth,
    start_wait_s,
)

RESNET18_BYTES = 4 * 11_181_642


def _log(t: int, iteration_s: float) -> IterationLog:
    return IterationLog(t, 0, 1.0, iteration_s / 2, 0.0, 0.0, 0.0, iteration_s)


def test_the_rule_is_a_multiple_of_the_slowest_recent_iteration_with_a_floor() -> None:
    assert peer_wait_s([0.2, 0.5, 0.3], first_bound_s=999) == FLOOR_S  # small models: the floor
    assert peer_wait_s([20.0, 45.0, 30.0], first_bound_s=999) == FACTOR * 45.0
    assert peer_wait_s([], first_bound_s=777.0) == 777.0  # nothing measured yet


def test_the_bandwidth_is_pessimistic_and_grows_with_memory() -> None:
    assert pessimistic_bandwidth(128) == pytest.approx(1e6)
    assert pessimistic_bandwidth(512) == pytest.approx(4e6)
    assert pessimistic_bandwidth(1280) == pessimistic_bandwidth(10240) == pytest.approx(10e6)


def test_the_first_iteration_bound_scales_with_the_model_workers_and_memory() -> None:
    # ResNet-18 (44.7 MB), W = 8 at 1,769 MB: 120 s + 8 x 44.7 MB at 10 MB/s + 10 x 2 s
    got = first_iteration_bound_s(
        vector_bytes=RESNET18_BYTES, memory_mb=1769, num_workers=8, train_s=2.0
    )
    assert got == pytest.approx(120 + 8 * RESNET18_BYTES / 10e6 + 20)
    assert 170 < got < 180
    small = first_iteration_bound_s(
        vector_bytes=RESNET18_BYTES, memory_mb=256, num_workers=8, train_s=2.0
    )
    assert small == pytest.approx(120 + 8 * RESNET18_BYTES / 2e6 + 20)  # 2 MB/s: about 320 s
    assert (
        first_iteration_bound_s(
            vector_bytes=RESNET18_BYTES, memory_mb=1769, num_workers=16, train_s=2.0
        )
        > got
    )


def test_the_start_barrier_waits_longer_than_the_coordinators_start_slack() -> None:
    assert start_wait_s(vector_bytes=1000, memory_mb=1769) == pytest.approx(START_FLOOR_S, abs=1)
    assert start_wait_s(vector_bytes=RESNET18_BYTES, memory_mb=128) == pytest.approx(
        START_FLOOR_S + 2 * RESNET18_BYTES / 1e6
    )


def test_a_given_timeout_wins_everywhere() -> None:
    cfg = JobConfig(comm_timeout_s=7.5)
    t = PeerTimeouts.for_worker(cfg, 0, numel=10**8)
    assert t.start_s() == 7.5
    assert t.exchange_s([], train_s=100.0) == 7.5
    assert t.exchange_s([_log(1, 1000.0)], train_s=100.0) == 7.5


def test_a_worker_derives_its_waits_from_its_job_and_its_logs() -> None:
    # K = 2 aggregators with B = 32, two non-aggregators with A = 96: an aggregator's peers train
    # three times longer than it does.
    cfg = JobConfig(
        num_workers=4, num_aggregators=2, batch_size_agg=32, batch_size_wor=96, memory_mb=512
    )
    numel = 1_000_000
    agg = PeerTimeouts.for_worker(cfg, 0, numel)
    wor = PeerTimeouts.for_worker(cfg, 3, numel)
    comm = 4 * 4 * numel / 4e6  # W x 4 MB at 4 MB/s
    assert agg.exchange_s([], train_s=1.0) == pytest.approx(FLOOR_S + comm + FACTOR * 3.0)
    assert wor.exchange_s([], train_s=3.0) == pytest.approx(FLOOR_S + comm + FACTOR * 3.0)
    assert agg.start_s() == pytest.approx(START_FLOOR_S + 2 * 4 * numel / 4e6)

    logs = [_log(t, 1.0) for t in range(1, 10)]
    assert agg.exchange_s(logs, train_s=0.5) == FLOOR_S
    logs.append(_log(10, 30.0))
    assert agg.exchange_s(logs, train_s=0.5) == 300.0
    # only the recent iterations count: a slow one long ago is forgotten
    logs += [_log(t, 1.0) for t in range(11, 11 + RECENT_ITERATIONS)]
    assert agg.exchange_s(logs, train_s=0.5) == FLOOR_S
