"""The transfer fit: latency + size/bandwidth per memory size, against table interpolation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from fasdl.errors import InvalidInput
from fasdl.perf.transfer import (
    LatencyBandwidthModel,
    TableTransferModel,
    read_transfer_csv,
    transfer_from_dict,
)
from fasdl.profiler.fit import F_SCALE
from fasdl.profiler.fit_transfer import fit_line, fit_transfer

SIZES = [1, 2, 4, 8, 16, 32, 64]
# memory: (put latency s, put MB/s, get latency s, get MB/s)
TRUTH = {
    256: (0.09, 30.0, 0.03, 60.0),
    1024: (0.08, 90.0, 0.01, 85.0),
    3008: (0.1, 110.0, 0.005, 90.0),
}


def synthetic_rows(noise=0.0, seed=0, sizes=SIZES, truth=TRUTH):
    rng = np.random.default_rng(seed)
    rows = []
    for memory, (pl, pb, gl, gb) in truth.items():
        for s in sizes:
            up, down = pl + s / pb, gl + s / gb
            rows.append(
                {
                    "memory_mb": memory,
                    "object_mb": s,
                    "upload_s": up * (1 + noise * rng.standard_normal()),
                    "download_s": down * (1 + noise * rng.standard_normal()),
                    "samples": 1,
                }
            )
    return rows


def test_exact_latency_and_bandwidth_are_recovered():
    choice = fit_transfer(synthetic_rows())
    fit = choice.fit
    assert fit.memory_mb == tuple(TRUTH)
    for i, (pl, pb, gl, gb) in enumerate(TRUTH.values()):
        assert fit.put_latency_s[i] == pytest.approx(pl, rel=1e-6)
        assert fit.put_mb_per_s[i] == pytest.approx(pb, rel=1e-6)
        assert fit.get_latency_s[i] == pytest.approx(gl, rel=1e-6)
        assert fit.get_mb_per_s[i] == pytest.approx(gb, rel=1e-6)
    assert choice.fit_heldout_mape_pct < 1e-4
    assert choice.chosen == "latency_bandwidth"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_linear_transfers_keep_the_fit(seed):
    # With the true model linear, one line through 6 noisy points predicts the 7th better than
    # interpolating between 2 noisy neighbours.
    choice = fit_transfer(synthetic_rows(noise=0.03, seed=seed))
    assert choice.chosen == "latency_bandwidth"
    assert choice.fit_heldout_mape_pct < choice.table_heldout_mape_pct
    assert choice.model is choice.fit
    bandwidths = np.array(choice.fit.put_mb_per_s)
    assert np.allclose(bandwidths, [v[1] for v in TRUTH.values()], rtol=0.15)


def test_curved_transfers_keep_the_table():
    rows = [
        {
            "memory_mb": m,
            "object_mb": s,
            "upload_s": 0.02 + 0.01 * s**1.6,
            "download_s": 0.01 + 0.004 * s**1.6,
        }
        for m in (512, 2048)
        for s in range(1, 21)
    ]
    choice = fit_transfer(rows)
    assert choice.chosen == "table"
    assert choice.table_heldout_mape_pct < choice.fit_heldout_mape_pct
    assert choice.model is choice.table


def test_table_heldout_error_is_the_full_row_tables():
    """fit_transfer predicts a held-out point from a 4-row table; the whole row must agree."""
    rows = synthetic_rows(noise=0.1, seed=3, sizes=[1, 2, 3, 5, 8, 13, 21, 34])
    choice = fit_transfer(rows)
    errors = []
    for memory in TRUTH:
        row = [r for r in rows if r["memory_mb"] == memory]
        for i, held in enumerate(row):
            table = TableTransferModel.from_rows(row[:i] + row[i + 1 :])
            for key, predict in (("upload_s", table.put_s), ("download_s", table.get_s)):
                errors.append(abs(predict(held["object_mb"], memory) - held[key]) / held[key])
    assert choice.heldout_points == len(errors) == 2 * len(rows)
    assert choice.table_heldout_mape_pct == pytest.approx(100 * np.mean(errors), rel=1e-12)


def test_fit_line_minimises_the_same_loss_as_scipy():
    rng = np.random.default_rng(11)
    s = np.array(SIZES, dtype=float)
    t = (0.05 + s / 40.0) * (1 + 0.05 * rng.standard_normal(s.size))
    t[2] *= 1.8
    latency, mb_per_s = fit_line(s, t)
    ref = least_squares(
        lambda p: (p[0] + p[1] * s) / t - 1.0,
        [0.01, 0.01],
        bounds=([0, 1e-12], [np.inf, np.inf]),
        loss="soft_l1",
        f_scale=F_SCALE,
        xtol=1e-14,
        ftol=1e-14,
    )
    assert latency == pytest.approx(ref.x[0], rel=1e-4)
    assert 1 / mb_per_s == pytest.approx(ref.x[1], rel=1e-4)


def test_fit_line_keeps_latency_non_negative():
    s = np.array([1.0, 2.0, 4.0, 8.0])
    latency, mb_per_s = fit_line(s, s / 50.0 - 0.001)  # a line through a negative intercept
    assert latency == 0.0
    assert mb_per_s == pytest.approx(50.0, rel=0.05)


def test_aws_table():
    rows = read_transfer_csv(_aws_csv())
    choice = fit_transfer(rows, source="aws")
    assert choice.heldout_points == 2 * len(rows)
    assert len(choice.fit.memory_mb) == 14
    for err in (choice.fit_heldout_mape_pct, choice.table_heldout_mape_pct):
        assert 1.0 < err < 20.0  # measured on a real cloud: a few % of scatter, not a model failure
    better = min(choice.fit_heldout_mape_pct, choice.table_heldout_mape_pct)
    assert better == (
        choice.fit_heldout_mape_pct
        if choice.chosen == "latency_bandwidth"
        else choice.table_heldout_mape_pct
    )
    # A bigger function gets more network: upload bandwidth at 3008 MB is several times 128 MB's.
    assert choice.fit.put_mb_per_s[-1] > 3 * choice.fit.put_mb_per_s[0]
    # Both models describe the measurements they came from to within the scatter.
    measured = np.array([r["upload_s"] for r in rows])
    fitted = np.array([choice.fit.put_s(r["object_mb"], r["memory_mb"]) for r in rows])
    assert np.mean(np.abs(fitted - measured) / measured) < 0.15
    assert choice.table.put_s(10, 1024) == pytest.approx(
        next(r["upload_s"] for r in rows if (r["memory_mb"], r["object_mb"]) == (1024, 10))
    )


def _aws_csv():
    from importlib import resources

    return str(resources.files("fasdl.presets").joinpath("aws-lambda-s3-transfer-times.csv"))


def test_model_interpolates_between_memory_sizes_and_holds_beyond():
    model = LatencyBandwidthModel(
        (512.0, 1024.0), (0.1, 0.2), (50.0, 100.0), (0.02, 0.04), (40.0, 80.0)
    )
    assert model.put_s(10, 512) == pytest.approx(0.1 + 10 / 50)
    assert model.put_s(10, 768) == pytest.approx(0.15 + 10 / 75)
    assert model.get_s(12, 768) == pytest.approx(0.03 + 12 / 60)
    assert model.put_s(10, 4096) == pytest.approx(model.put_s(10, 1024))
    assert model.get_s(10, 128) == pytest.approx(model.get_s(10, 512))


def test_to_dict_round_trips_through_the_transfer_registry():
    model = fit_transfer(synthetic_rows(noise=0.02), source="store.csv").fit
    d = model.to_dict()
    assert d["kind"] == "latency_bandwidth"
    back = transfer_from_dict(d)
    assert back == model
    assert back.get_s(20, 2000) == model.get_s(20, 2000)


@pytest.mark.parametrize(
    "d,match",
    [
        ({"kind": "latency_bandwidth"}, "non-empty list"),
        ({"kind": "latency_bandwidth", "rows": [{"memory_mb": 512}]}, "keys"),
        (
            {
                "kind": "latency_bandwidth",
                "rows": [
                    {
                        "memory_mb": 512,
                        "put_latency_s": 0.1,
                        "put_mb_per_s": 0,
                        "get_latency_s": 0.1,
                        "get_mb_per_s": 10,
                    }
                ],
            },
            "bandwidths > 0",
        ),
        ({"kind": "table", "rows": []}, "is not 'latency_bandwidth'"),
    ],
)
def test_from_dict_rejects_bad_models(d, match):
    with pytest.raises(InvalidInput, match=match):
        LatencyBandwidthModel.from_dict(d)


def test_too_few_sizes_per_memory():
    rows = synthetic_rows(sizes=[1, 8])
    with pytest.raises(InvalidInput, match="fewer than 3 object sizes"):
        fit_transfer(rows)


def test_bad_rows():
    with pytest.raises(InvalidInput, match="no rows"):
        fit_transfer([])
    rows = synthetic_rows()
    rows[4]["download_s"] = 0.0
    with pytest.raises(InvalidInput, match="> 0"):
        fit_transfer(rows)
    rows = synthetic_rows()
    rows[0]["memory_mb"] = 64
    with pytest.raises(InvalidInput, match="outside 128"):
        fit_transfer(rows)


def test_repeated_measurements_are_merged_by_their_sample_counts():
    rows = synthetic_rows()
    extra = dict(rows[3], upload_s=rows[3]["upload_s"] * 2, samples=3)
    choice = fit_transfer([*rows, extra])
    memory, size = rows[3]["memory_mb"], rows[3]["object_mb"]
    assert choice.table.put_s(size, memory) == pytest.approx(rows[3]["upload_s"] * (1 + 2 * 3) / 4)
