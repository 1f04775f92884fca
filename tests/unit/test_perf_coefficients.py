"""One Coefficients type for coeffs.json: what fit writes, optimize reads (min_memory_mb too)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fasdl.errors import InvalidInput
from fasdl.optimizer.grid import memory_grid
from fasdl.optimizer.model import Scenario
from fasdl.optimizer.plan import optimize, search_space
from fasdl.perf.coefficients import Coefficients, read_coefficients, write_coefficients
from fasdl.perf.transfer import LatencyBandwidthModel, load_transfer
from fasdl.pricing import load_prices
from fasdl.profiler.fit import train_time_s, trans_time_s
from fasdl.profiler.fit_report import fit_files
from fasdl.profiler.records import ProfileSample, append_sample, read_profile

SIX = {"a": 600.0, "b": 10.0, "m": 200.0, "k1": 2.0, "k2": -0.2, "model_size_mb": 45.0}


def test_round_trip_keeps_every_key(tmp_path):
    transfer = LatencyBandwidthModel(
        (512.0, 2048.0), (0.1, 0.05), (40.0, 90.0), (0.02, 0.01), (60.0, 95.0)
    )
    c = Coefficients(
        **SIX,
        num_params=11_689_512,
        min_memory_mb=512,
        transfer=transfer.to_dict(),
        provenance={"by": "hand"},
    )
    path = tmp_path / "coeffs.json"
    write_coefficients(path, c)
    back = read_coefficients(path)
    assert back == c
    assert back.min_memory_mb == 512 and back.transfer_model() == transfer
    assert Coefficients.from_dict(c.to_dict()) == c
    assert list(json.loads(path.read_text())) == [
        *SIX,
        "num_params",
        "min_memory_mb",
        "max_memory_mb",
        "transfer",
        "provenance",
    ]


def test_whole_floats_become_ints_and_bad_min_memory_is_named():
    c = Coefficients.from_dict({**SIX, "num_params": 1234.0, "min_memory_mb": 1024.0})
    assert (c.num_params, c.min_memory_mb) == (1234, 1024)
    assert isinstance(c.min_memory_mb, int)
    for bad in (0, -128, 512.5, "512", True):
        with pytest.raises(InvalidInput, match="min_memory_mb"):
            Coefficients.from_dict({**SIX, "min_memory_mb": bad})


def test_unknown_keys_are_refused_but_provenance_is_accepted():
    with pytest.raises(InvalidInput, match="unknown keys min_memory, r2") as e:
        Coefficients.from_dict({**SIX, "min_memory": 512, "r2": 0.9})
    assert "provenance" in str(e.value)
    c = Coefficients.from_dict({**SIX, "provenance": {"r2": 0.9}})
    assert c.provenance == {"r2": 0.9}
    with pytest.raises(InvalidInput, match="provenance"):
        Coefficients.from_dict({**SIX, "provenance": [1]})


def test_errors_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**SIX, "a": -1}))
    with pytest.raises(InvalidInput, match=f"{path}: a: -1.0 must be > 0"):
        read_coefficients(path)
    path.write_text(json.dumps({**SIX, "transfer": {"kind": "table"}}))
    with pytest.raises(InvalidInput, match=f"{path}: transfer: malformed transfer model"):
        read_coefficients(path)


def _profile_with_oom_below(path, oom_memory: int, ok_memories: tuple[int, ...]):
    for b in (16, 32, 64):
        append_sample(path, ProfileSample(oom_memory, b, None, None, status="out_of_memory"))
    for m in ok_memories:
        for b in (16, 32, 64):
            train = float(train_time_s(b, m, 20.0, 8.0, 200.0))
            trans = float(trans_time_s(m, 3.0, -0.8))
            append_sample(path, ProfileSample(m, b, train, trans, model_size_mb=0.25))
    # a larger batch running out of memory at a memory that otherwise ran does not move the floor
    append_sample(path, ProfileSample(ok_memories[0], 512, None, None, status="out_of_memory"))
    return path


def test_fit_writes_the_smallest_memory_that_did_not_run_out(tmp_path):
    profile = _profile_with_oom_below(tmp_path / "profile.csv", 256, (512, 1024, 2048))
    assert read_profile(profile).min_memory_mb == 512
    report = fit_files(profile)
    assert report.coeffs.min_memory_mb == 512
    assert report.to_dict()["min_memory_mb"] == 512
    out = tmp_path / "coeffs.json"
    write_coefficients(out, report.coeffs)
    assert json.loads(out.read_text())["min_memory_mb"] == 512
    assert read_coefficients(out).min_memory_mb == 512


def test_a_profile_with_no_finished_run_has_no_floor(tmp_path):
    path = tmp_path / "p.csv"
    append_sample(path, ProfileSample(256, 16, None, None, status="out_of_memory"))
    append_sample(path, ProfileSample(512, 16, None, None, status="failed"))
    assert read_profile(path).min_memory_mb is None


def _scenario(**coeffs) -> Scenario:
    return Scenario(
        coeffs=Coefficients(**{**SIX, **coeffs}),
        prices=load_prices("aws"),
        samples=50_000,
        epochs=10,
    )


def test_optimize_never_plans_below_min_memory():
    transfer = load_transfer("aws")
    free = optimize(_scenario(), transfer, deadline_s=1e9)
    floor = free.memory_mb + 512  # the cheapest plan without a floor sits below it
    floored = _scenario(min_memory_mb=floor)
    assert int(search_space(floored, transfer).memories[0]) == floor
    # an explicit grid reaching lower is cut at the floor
    grid = search_space(floored, transfer, memory_grid(128, 10_240, 64))
    assert int(grid.memories.min()) >= floor
    for deadline in (1e9, 4 * 3600.0):
        plan = optimize(floored, transfer, deadline_s=deadline, memories=memory_grid(128))
        assert plan.memory_mb >= floor
    plan = optimize(floored, transfer, budget_usd=1e6, memories=memory_grid(128))
    assert plan.memory_mb >= floor
    with pytest.raises(InvalidInput, match="max_memory"):
        search_space(floored, transfer, np.array([128, 256]))


def test_the_optimizer_refuses_an_unknown_model_size():
    with pytest.raises(InvalidInput, match="model_size_mb"):
        _scenario(model_size_mb=None)


def test_fit_writes_the_largest_profiled_memory_and_optimize_flags_extrapolation(tmp_path):
    profile = _profile_with_oom_below(tmp_path / "profile.csv", 256, (512, 1024))
    coeffs = fit_files(profile).coeffs
    assert coeffs.max_memory_mb == 1024
    out = tmp_path / "coeffs.json"
    write_coefficients(out, coeffs)
    assert read_coefficients(out).max_memory_mb == 1024
    transfer = load_transfer("aws")
    s = Scenario(coeffs=coeffs, prices=load_prices("aws"), samples=50_000, epochs=10)
    fast = optimize(s, transfer, deadline_s=1e9, memories=memory_grid(512, 10_240, 512))
    capped = optimize(s, transfer, deadline_s=1e9, memories=memory_grid(512, 1024, 512))
    assert capped.warnings == ()
    if fast.memory_mb > 1.5 * 1024:
        assert fast.warnings and "1024 MB" in fast.warnings[0]
        assert fast.to_dict()["warnings"] == list(fast.warnings)
    else:
        assert fast.warnings == ()


def test_extrapolation_is_flagged_beyond_one_and_a_half_times_the_profiled_memory():
    from fasdl.optimizer.plan import extrapolation_warnings

    c = Coefficients(**{**SIX, "max_memory_mb": 1024})
    assert extrapolation_warnings(c, 1536) == ()
    (warning,) = extrapolation_warnings(c, 1600)
    assert "1600 MB" in warning and "1024 MB" in warning and "--max-memory 1024" in warning
    assert extrapolation_warnings(Coefficients(**SIX), 10_240) == ()  # nothing known: silent
