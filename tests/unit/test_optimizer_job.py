"""The whole job's terms: expected max of W, rounds, start-up, checkpoints, request counts."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import pytest

from fasdl.kreduce import coordinator as kcoordinator
from fasdl.kreduce import worker as kworker
from fasdl.kreduce.logs import IterationLog
from fasdl.optimizer import Scenario, evaluate
from fasdl.optimizer.job import (
    BARRIER_POLL_MAX_S,
    GO_POLL_MAX_S,
    PROGRESS_EVERY_S,
    barrier_s,
    expected_max_std_normal,
    iterations_per_round,
    quota_wait_s,
    request_counts,
    rounds,
    straggler_wait_s,
)
from fasdl.perf.coefficients import Coefficients, read_coefficients
from fasdl.pricing import load_prices


def test_expected_max_matches_known_values_and_a_simulation():
    # Tabulated values of E[max of n standard normals] (e.g. Harter 1961).
    known = {1: 0.0, 2: 0.5642, 3: 0.8463, 4: 1.0294, 5: 1.1630, 10: 1.5388}
    got = expected_max_std_normal(list(known))
    assert got == pytest.approx(list(known.values()), abs=1e-4)
    # An oracle independent of the integral: the mean of maxima of random draws.
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((200_000, 7)).max(axis=1).mean()
    assert float(expected_max_std_normal(7)) == pytest.approx(sim, abs=0.01)
    # It grows with n, and its shape follows the input's.
    assert np.all(np.diff(expected_max_std_normal(np.arange(1, 50))) > 0)
    assert expected_max_std_normal(np.array([[2, 3], [4, 5]])).shape == (2, 2)


def test_straggler_wait_is_the_spread_times_the_expected_max():
    assert float(straggler_wait_s(0.2, 0.1, 4)) == pytest.approx(0.2 * 0.1 * 1.0294, abs=1e-5)
    assert float(straggler_wait_s(0.2, 0.1, 1)) == 0.0  # alone, nobody to wait for
    assert float(straggler_wait_s(0.2, 0.0, 8)) == 0.0  # no spread measured: no term


def _worker_round(func_time_s: float, startup_s: float, iteration_s: float, train_s: float) -> int:
    """The iterations the trainer's own stop rule (``kreduce.worker._plan_stop``) runs in one
    round, simulated: after training its k-th iteration aggregator 0 has ``F − S − (k−1)·T −
    train`` seconds left; the round ends one iteration after the first stop it announces."""
    logs = [IterationLog(i, 0, 1.0, train_s, 0, 0, 0, iteration_s) for i in range(1, 6)]
    for k in range(1, 100_000):
        remaining = func_time_s - startup_s - (k - 1) * iteration_s - train_s
        if kworker._plan_stop(k, logs, train_s, time.time() + remaining, func_time_s):
            return k + 1
    raise AssertionError("never stopped")


@pytest.mark.parametrize(
    ("func_time_s", "startup_s", "iteration_s", "train_s"),
    [(100, 7.3, 1.0, 0.4), (900, 4.1, 0.73, 0.3), (30, 3.2, 0.61, 0.2), (60, 0.0, 2.9, 1.1)],
)
def test_iterations_per_round_follow_the_workers_stop_rule(
    func_time_s, startup_s, iteration_s, train_s
):
    expected = _worker_round(func_time_s, startup_s, iteration_s, train_s)
    assert int(iterations_per_round(func_time_s, startup_s, iteration_s, train_s)) == expected


def test_constants_mirror_the_trainer():
    assert PROGRESS_EVERY_S == kworker.PROGRESS_EVERY_S
    assert GO_POLL_MAX_S == kworker.GO_POLL_MAX_S
    assert BARRIER_POLL_MAX_S == kcoordinator.BARRIER_POLL_MAX_S


def test_rounds():
    assert rounds(100, 40).tolist() == 3.0
    assert rounds(80, 40).tolist() == 2.0
    assert rounds(1, 40).tolist() == 1.0
    assert rounds(0, 40).tolist() == 1.0  # even an empty job starts its workers once


def test_request_counts_per_iteration_follow_the_protocol():
    """Against a count of the protocol's steps, worker by worker (one round): each data GET
    with the polls of its kind of wait (scheduled, or in a ring of aggregators)."""
    W, K, its = 6, 2, 10
    puts = gets = ring = 0
    for w in range(W):
        aggregator = w < K
        puts += (K - 1 if aggregator else K) * its  # the pieces of chunks it does not own
        if aggregator:
            gets += (W - K) * its  # the pieces of its chunk from non-aggregators
            ring += (K - 1) * its  # ... and from the other aggregators
            puts += its  # its merged chunk
            ring += (K - 1) * its  # the other merged chunks
        else:
            gets += K * its  # every merged chunk, stale: not waited for in a ring
    r = request_counts(
        iterations=its, num_workers=W, num_aggregators=K, rounds=1, loop_s=0, job_s=0
    )
    bookkeeping_puts = W + (2 * W + 2) + 4  # partitions; arrived, logs, go, state; final objects
    bookkeeping_gets = 2 * W + 1  # partitions, go; the model
    assert float(r["PUT"]) == puts + bookkeeping_puts
    assert float(r["GET"]) == pytest.approx(1.25 * gets + 1.75 * ring + bookkeeping_gets)
    assert float(r["DELETE"]) == K * its + 3 + 4


def _coeffs(**job: float) -> Coefficients:
    return Coefficients(a=500, b=10, m=100, k1=1.0, k2=-0.1, model_size_mb=40, **job)


def test_startup_scales_with_the_cpu_share():
    c = _coeffs(startup_fixed_s=1.0, startup_cpu_s=3.0)
    assert c.startup_s(1769) == pytest.approx(4.0)
    assert c.startup_s(884.5) == pytest.approx(7.0)
    assert _coeffs().startup_s(1769) == 0.0


def test_whole_job_terms_add_up():
    c = _coeffs(startup_fixed_s=1.0, startup_cpu_s=3.0, train_cv=0.1, eval_s_per_sample=0.001)
    s = Scenario(
        coeffs=c, prices=load_prices("aws"), samples=50_000, epochs=2, func_time_s=60,
        test_samples=2000,
    )  # fmt: skip
    W, K, M, put, get = 8, 2, 1769, 0.05, 0.04
    ev = evaluate(s, W, K, M, put, get)
    train = float(ev.train_s)
    wait = train * 0.1 * float(expected_max_std_normal(W))
    assert float(ev.straggler_s) == pytest.approx(wait)
    step = float(ev.iteration_s) + wait
    assert float(ev.loop_s) == pytest.approx(float(ev.iterations) * step)
    start = 4.0 + barrier_s()  # the function's start-up, then the barrier
    per_round = math.floor((60 - start - train - 2.5 * step - 3.0) / step) + 3
    n_rounds = math.ceil(float(ev.iterations) / per_round)
    assert n_rounds > 1  # the short limit makes this job re-invoke
    assert int(ev.invocations) == n_rounds
    assert float(ev.startup_s) == pytest.approx(start * n_rounds)
    assert float(ev.evaluation_s) == pytest.approx(2.0)
    total = float(ev.loop_s + ev.startup_s + ev.checkpoint_s + ev.evaluation_s)
    assert float(ev.time_s) == pytest.approx(total)
    # Billed: every worker from the start of each invocation to its end; not the evaluation.
    assert float(ev.gb_seconds) == pytest.approx(W * M / 1024 * (total - 2.0))


def test_a_round_starts_with_the_largest_partitions_load():
    """Each round, every worker loads its partition before the barrier: the largest one (the
    partitions follow the batches) at load_cpu_s_per_sample per sample, one thread's work (no
    faster above one vCPU); billed, as the functions run it."""
    base = dict(startup_fixed_s=1.0, startup_cpu_s=3.0)
    scenario = dict(prices=load_prices("aws"), samples=5_000, epochs=1, func_time_s=900)
    plain = evaluate(Scenario(coeffs=_coeffs(**base), **scenario), 8, 8, 885, 0.05, 0.04)
    per_sample = 1e-4
    more = evaluate(
        Scenario(coeffs=_coeffs(**base, load_cpu_s_per_sample=per_sample), **scenario),
        8, 8, 885, 0.05, 0.04,
    )  # fmt: skip
    assert int(more.invocations) == int(plain.invocations) == 1
    load = per_sample * 5_000 / 8 / (885 / 1769)  # K = W: equal partitions of D/W
    assert float(more.startup_s) == pytest.approx(float(plain.startup_s) + load)
    assert float(more.gb_seconds) == pytest.approx(float(plain.gb_seconds) + 8 * 885 / 1024 * load)
    c = _coeffs(load_cpu_s_per_sample=per_sample)
    assert float(c.partition_load_s(3538, 1000)) == pytest.approx(0.1)  # 2 vCPUs: one thread
    assert float(_coeffs().partition_load_s(885, 1000)) == 0.0  # not measured: no term


def test_evaluation_fixed_part_and_the_data_upload_are_timed_but_not_billed():
    """The cold evaluation's fixed part and the coordinator's upload of the partitions (once,
    before the first round) lengthen the job; neither runs in a function, so neither is billed."""
    base = dict(startup_fixed_s=1.0, startup_cpu_s=3.0, eval_s_per_sample=0.001)
    scenario = dict(prices=load_prices("aws"), samples=50_000, epochs=2, func_time_s=60)
    plain = evaluate(
        Scenario(coeffs=_coeffs(**base), test_samples=2000, **scenario), 8, 2, 1769, 0.05, 0.04
    )
    more = evaluate(
        Scenario(coeffs=_coeffs(**base, eval_fixed_s=0.3, data_upload_s=0.7), test_samples=2000,
                 **scenario),
        8, 2, 1769, 0.05, 0.04,
    )  # fmt: skip
    assert float(more.evaluation_s) == pytest.approx(float(plain.evaluation_s) + 0.3)
    assert float(more.startup_s) == pytest.approx(float(plain.startup_s) + 0.7)
    assert float(more.time_s) == pytest.approx(float(plain.time_s) + 1.0)
    assert float(more.gb_seconds) == pytest.approx(float(plain.gb_seconds))
    # no test set, no evaluation at all (the coordinator skips it)
    none = evaluate(
        Scenario(coeffs=_coeffs(**base, eval_fixed_s=0.3), **scenario), 8, 2, 1769, 0.05, 0.04
    )
    assert float(none.evaluation_s) == 0.0


def test_old_coefficient_files_still_load(tmp_path):
    """A coeffs.json written before the job's keys existed loads, and leaves the terms out."""
    old = {
        "a": 20.1, "b": 7.9, "m": 195.0, "k1": 2.6, "k2": -0.78, "model_size_mb": 44.6,
        "num_params": 11689512, "min_memory_mb": 512, "max_memory_mb": 3008,
        "transfer": {"kind": "preset", "name": "aws"}, "provenance": {"by": "fasdl fit 0.1"},
    }  # fmt: skip
    path = tmp_path / "coeffs.json"
    path.write_text(json.dumps(old))
    c = read_coefficients(path)
    assert c.startup_fixed_s is None and c.train_cv is None and c.eval_s_per_sample is None
    assert c.startup_s(1024) == 0.0
    assert "startup_fixed_s" not in c.to_dict()  # and writes back the same keys
    new = Coefficients.from_dict({**old, "startup_fixed_s": 0.5, "train_cv": 0.05})
    assert Coefficients.from_dict(new.to_dict()) == new


def test_a_negative_job_coefficient_is_refused():
    from fasdl.errors import InvalidInput

    with pytest.raises(InvalidInput, match="train_cv"):
        Coefficients.from_dict(
            {"a": 1, "b": 1, "m": 1, "k1": 1, "k2": -0.1, "model_size_mb": 1, "train_cv": -0.1}
        )


def test_the_fit_separates_what_scales_with_the_cpu_share():
    """Start-ups made from known fixed and per-vCPU parts are fitted back; a profile without
    them (written before they existed) leaves every job coefficient out."""
    from fasdl.profiler.fit import fit_job
    from fasdl.profiler.records import ProfileSample

    def row(m: int, b: int, **job: float) -> ProfileSample:
        return ProfileSample(m, b, 0.1, 0.01, **job)

    rows = [
        row(m, b, startup_s=0.4 + 2.0 * 1769 / m, train_cv=0.02 + 0.05 * 1769 / m,
            eval_s_per_sample=1e-4)
        for m in (442, 885, 1769) for b in (16, 32)
    ]  # fmt: skip
    job = fit_job(rows)
    assert job.startup_fixed_s == pytest.approx(0.4) and job.startup_cpu_s == pytest.approx(2.0)
    assert job.train_cv == pytest.approx(0.02) and job.train_cv_cpu == pytest.approx(0.05)
    assert job.eval_s_per_sample == pytest.approx(1e-4)
    c = _coeffs(**{k: v for k, v in job.coefficients().items() if v is not None})
    assert c.train_cv_at(885) == pytest.approx(0.02 + 0.05 * 1769 / 885)
    # A fixed part that would be negative is dropped rather than fitted below zero.
    falling = [row(m, 16, startup_s=2.0 * 1769 / m - 0.1) for m in (885, 1769)]
    assert fit_job(falling).startup_fixed_s == 0.0
    old = fit_job([row(885, 16), row(1769, 16)])
    assert all(v is None for v in old.coefficients().values()) and old.startup_points == 0


def test_the_data_load_is_timed_apart_from_the_start_up_and_fitted_per_cpu_second():
    """The profiling function's data load is taken out of its start-up and given per sample;
    the fit turns it into CPU-seconds per sample (one thread: min(1, vCPUs) of a core)."""
    from fasdl.profiler.fit import fit_job
    from fasdl.profiler.profile import startup_and_spread
    from fasdl.profiler.records import ProfileSample

    result = {"model_ready_s": 1.5, "handler_s": 4.0, "data_load_s": 0.4, "data_samples": 2000}
    out = startup_and_spread(result, billed_s=4.3)
    assert out["startup_s"] == pytest.approx(0.3 + 1.5 - 0.4)
    assert out["load_s_per_sample"] == pytest.approx(0.4 / 2000)
    older = startup_and_spread({"model_ready_s": 1.5, "handler_s": 4.0}, billed_s=4.3)
    assert older["startup_s"] == pytest.approx(1.8) and older["load_s_per_sample"] is None
    bad = startup_and_spread({**result, "data_load_s": float("nan")}, billed_s=4.3)
    assert bad["load_s_per_sample"] is None and bad["startup_s"] == pytest.approx(1.8)

    cpu_s = 1e-4  # per sample at one vCPU
    rows = [
        ProfileSample(m, 16, 0.1, 0.01, load_s_per_sample=cpu_s / min(1.0, m / 1769))
        for m in (885, 1769, 3538)
    ]
    assert fit_job(rows).load_cpu_s_per_sample == pytest.approx(cpu_s)
    assert fit_job([ProfileSample(885, 16, 0.1, 0.01)]).load_cpu_s_per_sample is None


def test_the_quota_wait_is_half_a_stop_of_a_fractional_cpu_and_only_among_peers():
    # q = 0.5 with a 50 ms period: stopped 25 ms of every period, 12.5 ms on average
    assert float(quota_wait_s(884.5, 4, 0.05)) == pytest.approx(0.0125)
    assert float(quota_wait_s(1769 * 0.65, 3, 0.05)) == pytest.approx(0.35 * 0.025)
    # a whole vCPU or more is never stopped; one worker has no peers to hold up; no period known
    assert float(quota_wait_s(1769, 4, 0.05)) == 0.0 and float(quota_wait_s(3538, 4, 0.05)) == 0.0
    assert float(quota_wait_s(884.5, 1, 0.05)) == 0.0
    assert float(quota_wait_s(884.5, 4, None)) == 0.0
    # in the job: every iteration of the loop waits it, and the functions are billed for it
    base = dict(prices=load_prices("aws"), samples=50_000, epochs=2, func_time_s=900)
    plain = evaluate(Scenario(coeffs=_coeffs(), **base), 4, 2, 885, 0.05, 0.04)
    quota = evaluate(Scenario(coeffs=_coeffs(cpu_period_s=0.05), **base), 4, 2, 885, 0.05, 0.04)
    extra = float(quota.iterations) * float(quota_wait_s(885, 4, 0.05))
    assert extra > 0
    assert float(quota.loop_s) == pytest.approx(float(plain.loop_s) + extra)
    assert float(quota.gb_seconds) == pytest.approx(
        float(plain.gb_seconds) + 4 * 885 / 1024 * extra
    )


def test_with_a_known_cpu_period_the_spread_is_fitted_where_no_quota_stops_the_function():
    from fasdl.profiler.fit import fit_job
    from fasdl.profiler.records import ProfileSample

    rows = [
        ProfileSample(m, 16, 0.1, 0.01, train_cv=cv, cpu_period_s=0.05)
        for m, cv in ((885, 0.30), (1152, 0.35), (1769, 0.03), (1769, 0.05))
    ]
    job = fit_job(rows)
    assert job.cpu_period_s == 0.05
    assert job.train_cv == pytest.approx(0.04) and job.train_cv_cpu == 0.0
    # without the period, the quota's stops stay in the spread, fitted over every run
    unknown = fit_job([dataclasses.replace(r, cpu_period_s=None) for r in rows])
    assert unknown.cpu_period_s is None and unknown.train_cv_cpu > 0


def test_a_given_configuration_is_priced_as_the_search_prices_its_choice():
    from fasdl.errors import NoPlan
    from fasdl.optimizer import predict
    from fasdl.optimizer.plan import plan_at
    from fasdl.perf.transfer import load_transfer

    c = _coeffs(startup_fixed_s=1.0, startup_cpu_s=3.0, train_cv=0.1)
    s = Scenario(coeffs=c, prices=load_prices("aws"), samples=50_000, epochs=2)
    aws = load_transfer("aws")
    plan = plan_at(s, aws, 8, 2, 1769)
    assert plan.prediction == predict(s, aws, 8, 2, 1769)
    d = plan.to_dict()
    assert (d["num_workers"], d["pattern_k"], d["memory"]) == (8, 2, 1769)
    assert d["predicted_time_s"] == pytest.approx(sum(d["breakdown"]["job_s"][k] for k in (
        "loop", "startup", "checkpoint", "evaluation")))  # fmt: skip
    with pytest.raises(NoPlan, match="pattern_k=9"):
        plan_at(s, aws, 8, 9, 1769)  # K > W cannot run
