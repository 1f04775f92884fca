"""The time/cost model: each term against its definition, and the patterns as special cases."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fasdl.errors import InvalidInput
from fasdl.optimizer.grid import memory_grid, predict, transfer_grid
from fasdl.optimizer.model import PROBLEMS, Scenario, batch_size_agg, evaluate
from fasdl.optimizer.plan import baseline
from fasdl.perf.coefficients import Coefficients
from fasdl.perf.transfer import load_transfer
from fasdl.pricing import load_prices

PRICES = load_prices("aws")
COEFFS = Coefficients.from_dict(
    {"a": 500.0, "b": 10.0, "m": 100.0, "k1": 1.0, "k2": -0.1, "model_size_mb": 40.0}
)


def scenario(**kw) -> Scenario:
    return Scenario(**{"coeffs": COEFFS, "prices": PRICES, "samples": 50_000, "epochs": 10, **kw})


class LinearTransfer:
    """Latency plus size over a bandwidth that grows with memory."""

    def put_s(self, size_mb: float, memory_mb: float) -> float:
        return 0.05 + size_mb / (20 + memory_mb / 100)

    def get_s(self, size_mb: float, memory_mb: float) -> float:
        return 0.02 + size_mb / (40 + memory_mb / 50)

    def to_dict(self):
        return {"kind": "test"}


def test_batch_size_agg_from_gamma():
    assert batch_size_agg(10, 0.8) == 40  # 40/(40+10) = 0.8 exactly
    assert batch_size_agg(7, 0.8) == 28
    assert batch_size_agg(7.1, 0.8) == 29  # 28/(28+7.1) < 0.8, so one more
    assert batch_size_agg(0.1, 0.8) == 1
    assert batch_size_agg(0, 0.8) == 1  # no overhead: any batch reaches γ
    assert batch_size_agg(-3.5, 0.8) == 4  # the smallest batch with B + b > 0
    with pytest.raises(InvalidInput, match="gamma"):
        batch_size_agg(10, 1.0)


@given(b=st.floats(0.01, 200), gamma=st.floats(0.05, 0.98))
@settings(max_examples=50, deadline=None)
def test_batch_size_agg_is_the_smallest_reaching_gamma(b, gamma):
    B = batch_size_agg(b, gamma)
    assert B / (B + b) >= gamma - 1e-9
    if B > 1:
        assert (B - 1) / (B - 1 + b) < gamma


def test_one_configuration_term_by_term():
    s = scenario()
    W, K, M, put, get = 10, 4, 1024, 0.3, 0.2
    ev = evaluate(s, W, K, M, put, get)
    B = 40
    train = 500 * (B + 10) / (M + 100)
    trans = 1.0 * M**-0.1
    iteration = train + trans + (K - 1) * put + ((W - 1) * get + put) + (K - 1) * get
    assert float(ev.iteration_s) == pytest.approx(iteration)
    assert float(ev.upload_s) == pytest.approx(3 * put)
    assert float(ev.aggregate_s) == pytest.approx(9 * get + put)
    assert float(ev.download_s) == pytest.approx(3 * get)
    # A: the non-aggregator's cycle (train A, transform, K puts, K gets) fits in the iteration...
    A = int(ev.batch_size_wor)

    def cycle(a: int) -> float:
        return 500 * (a + 10) / (M + 100) + trans + K * put + K * get

    assert cycle(A) <= iteration + 1e-9
    assert A < (1024 - K * B) // (W - K)  # (the cap does not bind here)
    assert cycle(A + 1) > iteration  # ...and is the largest that does
    Bg = K * B + (W - K) * A
    assert int(ev.global_batch) == Bg
    iterations = (50_000 // Bg) * 10
    assert int(ev.iterations) == iterations
    # No start-up, spread or evaluation in these coefficients: the loop, and checkpoints.
    assert float(ev.loop_s) == pytest.approx(iterations * iteration)
    # The worker's stop rule: stop at t+1 once fewer than 2.5 iterations and a 45 s margin
    # (5 % of 900 s) are left after training t; so floor(spare / T) + 3 iterations per round.
    per_round = math.floor((900 - train - 2.5 * iteration - 45) / iteration) + 3
    invocations = math.ceil(iterations / per_round)
    assert int(ev.invocations) == invocations
    checkpoints = (invocations - 1) * 2 * K * (put + get)
    assert float(ev.checkpoint_s) == pytest.approx(checkpoints)
    time_s = iterations * iteration + checkpoints
    assert float(ev.time_s) == pytest.approx(time_s)
    gb_s = W * M / 1024 * time_s
    assert float(ev.gb_seconds) == pytest.approx(gb_s)
    restarts = invocations - 1
    puts = (
        iterations * W * K  # pieces and merged chunks
        + W  # partitions
        + invocations * (2 * W + 2)  # arrived, logs; go, state
        + restarts * W  # checkpoints
        + restarts * K  # the aggregators' merged chunks again on resume
        + 4  # model, summary, invocations, state
        + math.floor(iterations * iteration / 1.0)  # progress
    )
    gets = (
        1.25 * iterations * 2 * K * (W - K)  # data from and to non-aggregators, polls included
        + 1.75 * iterations * 2 * K * (K - 1)  # data between aggregators (a ring), polls included
        + invocations * 2 * W  # partitions, go
        + restarts * W  # checkpoints
        + 1  # the model
        + math.floor(time_s / 0.5)  # the coordinator's reads of the progress
    )
    assert float(ev.requests["PUT"]) == pytest.approx(puts)
    assert float(ev.requests["GET"]) == pytest.approx(gets)
    lists = 3 * invocations + 4
    deletes = iterations * K + lists
    assert float(ev.requests["DELETE"]) == deletes
    expected = (
        gb_s * 0.0000166667
        + W * invocations * 0.2e-6
        + (puts + lists) * 0.005e-3
        + gets * 0.0004e-3
    )
    assert float(ev.cost_usd) == pytest.approx(expected)
    assert bool(ev.ok)


def test_global_batch_cap_limits_the_non_aggregators():
    s = scenario(max_global_batch=300)
    ev = evaluate(s, 10, 4, 1024, 0.3, 0.2)
    assert int(ev.batch_size_wor) == (300 - 160) // 6
    assert int(ev.global_batch) <= 300


@given(W=st.integers(1, 40), M=st.sampled_from([256, 1024, 3008, 10240]))
@settings(max_examples=40, deadline=None)
def test_k_equal_w_is_scatter_reduce(W, M):
    """LambdaML's ScatterReduce: every worker trains B, puts W−1 chunks, gets W−1 pieces, puts
    its merged chunk, gets W−1 merged chunks; global batch W·B."""
    s = scenario()
    t = LinearTransfer()
    p = predict(s, t, W, W, M)
    c = 40 / W
    put, get = t.put_s(c, M), t.get_s(c, M)
    iteration = 500 * 50 / (M + 100) + M**-0.1 + (W - 1) * put + (W - 1) * get + put + (W - 1) * get
    assert p.batch_size_wor == 40 and p.global_batch == 40 * W
    assert p.iteration_s == pytest.approx(iteration)
    assert p.job_s["loop"] == pytest.approx((50_000 // (40 * W)) * 10 * iteration)
    assert p.requests["PUT"] >= p.iterations * W * W  # W² chunks per iteration
    assert (p.problem is None) == (40 * W <= 1024)


@given(W=st.integers(2, 60), M=st.sampled_from([512, 2048, 10240]))
@settings(max_examples=40, deadline=None)
def test_k_one_is_all_reduce(W, M):
    s = scenario()
    t = LinearTransfer()
    p = predict(s, t, W, 1, M)
    put, get = t.put_s(40, M), t.get_s(40, M)
    iteration = 500 * 50 / (M + 100) + M**-0.1 + (W - 1) * get + put
    assert p.iteration_s == pytest.approx(iteration)
    assert p.global_batch == 40 + (W - 1) * p.batch_size_wor


@given(W=st.integers(2, 25), M=st.sampled_from([512, 2048, 10240]))
@settings(max_examples=40, deadline=None)
def test_synchronous_all_reduce_waits_and_trains_equal_batches(W, M):
    """LambdaML's AllReduce: every worker trains B; the non-aggregators get merged(t) after it
    is put and then put their pieces of t+1, so a get and a put join the critical path."""
    s = scenario()
    t = LinearTransfer()
    p = predict(s, t, W, 1, M, synchronous=True)
    put, get = t.put_s(40, M), t.get_s(40, M)
    iteration = 500 * 50 / (M + 100) + M**-0.1 + (W - 1) * get + put + get + put
    assert p.iteration_s == pytest.approx(iteration)
    assert p.batch_size_wor == 40 and p.global_batch == 40 * W
    assert (p.problem is None) == (40 * W <= 1024)
    # ScatterReduce (K = W) has no non-aggregators: synchronous or not, the same prediction
    assert predict(s, t, W, W, M, synchronous=True) == predict(s, t, W, W, M)


def test_baselines_are_priced_at_the_plans_global_batch():
    s = scenario()
    t = LinearTransfer()
    plan = predict(s, t, 8, 2, 2048)
    for k in (1, 8):
        b = baseline(s, t, plan, k)
        assert b.num_workers == 8 and b.memory_mb == 2048 and b.num_aggregators == k
        assert b.batch_size_wor == b.batch_size_agg
        assert abs(b.global_batch - plan.global_batch) < 8
        assert b.iterations == pytest.approx(plan.iterations, rel=0.05)


def test_vectorised_equals_one_at_a_time():
    s = scenario()
    W = np.array([[3], [12], [30]])
    M = np.array([[512, 1769, 4096]])
    ev = evaluate(s, W, 3, M, 0.25, 0.15)
    for i in range(3):
        for j in range(3):
            one = evaluate(s, int(W[i, 0]), 3, int(M[0, j]), 0.25, 0.15)
            assert float(ev.cost_usd[i, j]) == pytest.approx(float(one.cost_usd))
            assert float(ev.time_s[i, j]) == pytest.approx(float(one.time_s))


def test_problems_are_reported():
    s = scenario()
    assert PROBLEMS[int(evaluate(s, 3, 4, 1024, 0.1, 0.1).problem)].startswith("K must")
    assert (
        "global batch cap" in PROBLEMS[int(evaluate(s, 30, 30, 1024, 0.1, 0.1).problem)]
    )  # 30·40 > 1024
    assert "function time limit" in PROBLEMS[int(evaluate(s, 500, 1, 1024, 0.1, 5.0).problem)]
    negative_m = scenario(coeffs=dataclasses.replace(COEFFS, m=-200.0))
    assert "M + m" in PROBLEMS[int(evaluate(negative_m, 2, 1, 128, 0.1, 0.1).problem)]
    assert bool(evaluate(negative_m, 2, 1, 256, 0.1, 0.1).ok)


def test_table_fast_path_equals_the_protocol():
    aws = load_transfer("aws")
    mems = memory_grid(128, 10240, 448)
    grid = transfer_grid(aws, 45.0, 30, mems)
    for k in (1, 2, 3, 7, 30):
        for j, m in enumerate(mems):
            assert grid.put_s[k - 1, j] == pytest.approx(aws.put_s(45.0 / k, float(m)), rel=1e-12)
            assert grid.get_s[k - 1, j] == pytest.approx(aws.get_s(45.0 / k, float(m)), rel=1e-12)
    other = transfer_grid(LinearTransfer(), 45.0, 3, mems)
    assert other.put_s[2, 0] == pytest.approx(LinearTransfer().put_s(15.0, 128))


def test_memory_grid():
    g = memory_grid(128, 1000, 64)
    assert g[0] == 128 and g[-1] == 1000 and np.all(np.diff(g) <= 64)
    assert list(memory_grid(1024, 1024, 64)) == [1024]
    with pytest.raises(InvalidInput, match="min_memory"):
        memory_grid(4096, 2048)
    with pytest.raises(InvalidInput, match="max_memory"):
        memory_grid(128, 20_000)
    with pytest.raises(InvalidInput, match="memory_step"):
        memory_grid(128, 1024, 0)


@pytest.mark.parametrize(
    "field,kw",
    [
        ("samples", {"samples": 0}),
        ("epochs", {"epochs": 0}),
        ("max_global_batch", {"max_global_batch": -1}),
        ("func_time", {"func_time_s": 901}),
    ],
)
def test_scenario_refuses_bad_numbers(field, kw):
    with pytest.raises(InvalidInput, match=field):
        scenario(**kw)
