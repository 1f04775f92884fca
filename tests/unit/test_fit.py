"""The least-squares fit of T_train and T_trans (fasdl.profiler.fit)."""

from __future__ import annotations

import numpy as np
import pytest

from fasdl.errors import InvalidInput
from fasdl.profiler.fit import (
    K2_BOUNDS,
    fit_profile,
    fit_train,
    fit_trans,
    train_time_s,
    trans_time_s,
)
from fasdl.profiler.records import ProfileSample

MEMORIES = [512, 1024, 1769, 3008]
BATCHES = [16, 32, 64, 128]
NOISE = 0.03  # relative: a few % is what repeated timings of one configuration scatter by


def grid(memories=MEMORIES, batches=BATCHES):
    B, M = np.meshgrid(batches, memories)
    return B.ravel().astype(float), M.ravel().astype(float)


def linearised_sd(residuals, x, noise):
    """Standard deviations of least-squares estimates, from the Jacobian at the true values.

    For relative residuals with noise of relative size `noise`, cov ≈ noise²·(JᵀJ)⁻¹; the test
    tolerance is 4 of these (a Monte Carlo of 200 noisy profiles on this grid scattered by 1.0–1.1
    of them, at most 3.2), so the test fails only if the fit is biased or worse than least squares.
    """
    x = np.asarray(x, dtype=float)
    steps = np.abs(x) * 1e-6 + 1e-9
    J = np.column_stack(
        [
            (residuals(x + h * e) - residuals(x - h * e)) / (2 * h)
            for h, e in zip(steps, np.eye(len(x)), strict=True)
        ]
    )
    return np.sqrt(np.diag(noise**2 * np.linalg.inv(J.T @ J)))


# --- T_train ------------------------------------------------------------------------------------


@pytest.mark.parametrize("a,b,m", [(20.0, 8.0, 200.0), (3.5, -10.0, -300.0), (150.0, 40.0, 1500.0)])
def test_train_fit_recovers_exact_coefficients(a, b, m):
    B, M = grid()
    fit = fit_train(B, M, train_time_s(B, M, a, b, m))
    assert fit.a == pytest.approx(a, rel=1e-5)
    assert fit.b == pytest.approx(b, rel=1e-5, abs=1e-6)
    assert fit.m == pytest.approx(m, rel=1e-5, abs=1e-4)
    assert fit.stats.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.stats.mape_pct < 1e-4
    assert fit.stats.loo_mape_pct < 1e-3
    assert fit.stats.at_bounds == ()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_train_fit_recovers_coefficients_from_noisy_points(seed):
    truth = np.array([20.0, 8.0, 200.0])
    B, M = grid()
    exact = train_time_s(B, M, *truth)
    sd = linearised_sd(lambda p: train_time_s(B, M, *p) / exact - 1.0, truth, NOISE)
    assert np.all(sd / truth < 0.15)  # the tolerance below is tight enough to mean something

    rng = np.random.default_rng(seed)
    fit = fit_train(B, M, exact * (1 + NOISE * rng.standard_normal(B.size)))
    got = np.array([fit.a, fit.b, fit.m])
    assert np.all(np.abs(got - truth) <= 4 * sd), (got, truth, sd)
    # In-sample MAPE of a 3 % Gaussian noise is about 3 %·√(2/π) ≈ 2.4 %.
    assert 1.0 < fit.stats.mape_pct < 4.0
    assert fit.stats.loo_mape_pct >= 0.9 * fit.stats.mape_pct
    assert fit.stats.r2 > 0.99


def test_train_fit_is_robust_to_one_disturbed_run():
    B, M = grid()
    T = train_time_s(B, M, 20.0, 8.0, 200.0)
    T[5] *= 3.0  # e.g. a cold start slipped into the median
    fit = fit_train(B, M, T)
    assert fit.a == pytest.approx(20.0, rel=0.02)
    assert fit.b == pytest.approx(8.0, rel=0.02)
    assert fit.m == pytest.approx(200.0, rel=0.02)
    others = np.arange(B.size) != 5
    assert np.allclose(fit.predict(B[others], M[others]), T[others], rtol=0.02)


def test_train_fit_flags_a_coefficient_the_profile_cannot_determine():
    B, M = grid()
    T = 0.01 * (B + 8.0)  # no dependence on memory at all: m runs off to its bound
    fit = fit_train(B, M, T)
    assert "m" in fit.stats.at_bounds
    assert np.allclose(fit.predict(B, M), T, rtol=0.02)


def test_leave_one_out_matches_refitting_by_hand():
    B, M = grid(memories=[512, 1024, 2048], batches=[16, 32, 64])
    rng = np.random.default_rng(7)
    T = train_time_s(B, M, 20.0, 8.0, 200.0) * (1 + NOISE * rng.standard_normal(B.size))
    fit = fit_train(B, M, T)
    errors = []
    for i in range(B.size):
        keep = np.arange(B.size) != i
        f = fit_train(B[keep], M[keep], T[keep])
        errors.append(abs(f.predict(B[i], M[i]) - T[i]) / T[i])
    assert fit.stats.loo_points == B.size
    assert fit.stats.loo_mape_pct == pytest.approx(100 * np.mean(errors), rel=1e-3)
    in_sample = 100 * np.mean(np.abs(fit.predict(B, M) - T) / T)
    assert fit.stats.mape_pct == pytest.approx(in_sample)


def test_leave_one_out_skips_points_whose_removal_leaves_too_little():
    # The only 1024 MB run cannot be left out: the rest would have one memory size.
    B = np.array([16.0, 32.0, 64.0, 128.0, 16.0])
    M = np.array([512.0, 512.0, 512.0, 512.0, 1024.0])
    fit = fit_train(B, M, train_time_s(B, M, 20.0, 8.0, 200.0))
    assert fit.stats.points == 5
    assert fit.stats.loo_points == 4


@pytest.mark.parametrize(
    "B,M,needed",
    [
        ([16, 32, 16], [512, 512, 1024], "at least 4"),
        ([16, 32, 64, 128], [512, 512, 512, 512], "2 memory sizes"),
        ([16, 16, 16, 16], [512, 1024, 2048, 3008], "2 batch sizes"),
    ],
)
def test_train_fit_says_how_many_points_it_needs(B, M, needed):
    with pytest.raises(InvalidInput, match=needed):
        fit_train(B, M, train_time_s(np.array(B), np.array(M), 20.0, 8.0, 200.0))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_train_fit_rejects_times_that_are_not_positive(bad):
    B, M = grid()
    T = train_time_s(B, M, 20.0, 8.0, 200.0)
    T[3] = bad
    with pytest.raises(InvalidInput, match="train_s"):
        fit_train(B, M, T)


# --- T_trans ------------------------------------------------------------------------------------


@pytest.mark.parametrize("k1,k2", [(3.0, -0.8), (0.5, -1.0), (0.02, 0.0), (10.0, -1.5)])
def test_trans_fit_recovers_exact_coefficients(k1, k2):
    M = np.array(MEMORIES * 2, dtype=float)
    fit = fit_trans(M, trans_time_s(M, k1, k2))
    assert fit.k1 == pytest.approx(k1, rel=1e-5)
    assert fit.k2 == pytest.approx(k2, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trans_fit_recovers_coefficients_from_noisy_points(seed):
    truth = np.array([3.0, -0.8])
    M = np.array(MEMORIES * 4, dtype=float)
    exact = trans_time_s(M, *truth)
    sd = linearised_sd(lambda p: trans_time_s(M, *p) / exact - 1.0, truth, NOISE)
    rng = np.random.default_rng(seed)
    fit = fit_trans(M, exact * (1 + NOISE * rng.standard_normal(M.size)))
    assert np.all(np.abs(np.array([fit.k1, fit.k2]) - truth) <= 4 * sd)
    assert fit.stats.r2 > 0.98


def test_trans_leave_one_out_matches_refitting_by_hand():
    M = np.array([512.0, 1024.0, 1769.0, 3008.0, 1024.0])
    T = trans_time_s(M, 3.0, -0.8) * np.array([1.02, 0.97, 1.04, 0.99, 1.01])
    fit = fit_trans(M, T)
    errors = []
    for i in range(M.size):
        keep = np.arange(M.size) != i
        errors.append(abs(fit_trans(M[keep], T[keep]).predict(M[i]) - T[i]) / T[i])
    assert fit.stats.loo_mape_pct == pytest.approx(100 * np.mean(errors), rel=1e-6)


def test_trans_fit_keeps_k2_in_its_plausible_range():
    M = np.array(MEMORIES, dtype=float)
    fit = fit_trans(M, trans_time_s(M, 1e6, -3.0))
    assert fit.k2 == pytest.approx(K2_BOUNDS[0])
    assert fit.stats.at_bounds == ("k2",)


def test_trans_fit_says_how_many_points_it_needs():
    with pytest.raises(InvalidInput, match="at least 3"):
        fit_trans([512, 1024], [0.02, 0.01])
    with pytest.raises(InvalidInput, match="2 memory sizes"):
        fit_trans([512, 512, 512], [0.02, 0.021, 0.019])


# --- a whole profile ----------------------------------------------------------------------------


def test_fit_profile_uses_only_runs_that_succeeded():
    B, M = grid()
    ok = [
        ProfileSample(
            int(m),
            int(b),
            float(train_time_s(b, m, 20.0, 8.0, 200.0)),
            float(trans_time_s(m, 3.0, -0.8)),
        )
        for b, m in zip(B, M, strict=True)
    ]
    bad = [
        ProfileSample(512, 256, None, None, status="out_of_memory"),
        ProfileSample(
            1024, 256, 99.0, 99.0, status="failed"
        ),  # numbers of a failed run mean nothing
    ]
    fit = fit_profile(ok + bad)
    assert (fit.runs_used, fit.runs_skipped) == (16, 2)
    assert fit.train.a == pytest.approx(20.0, rel=1e-5)
    assert fit.trans.k2 == pytest.approx(-0.8, rel=1e-5)


def test_fit_profile_without_a_successful_run():
    with pytest.raises(InvalidInput, match="none of its 1 runs"):
        fit_profile([ProfileSample(128, 64, None, None, status="out_of_memory")])
