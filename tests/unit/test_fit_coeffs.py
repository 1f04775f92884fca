"""coeffs.json and the fitting stage end to end (fit_files)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from fasdl.errors import InvalidInput
from fasdl.perf.coefficients import Coefficients, read_coefficients, write_coefficients
from fasdl.perf.transfer import TableTransferModel, write_transfer_csv
from fasdl.profiler.fit import train_time_s, trans_time_s
from fasdl.profiler.fit_report import fit_files
from fasdl.profiler.records import ProfileSample, append_sample

HAND_WRITTEN = {"a": 20.0, "b": 8.0, "m": 200.0, "k1": 3.0, "k2": -0.8, "model_size_mb": 44.6}


def write_profile(path, *, noise=0.0, seed=0, **meta):
    rng = np.random.default_rng(seed)
    for m in (512, 1024, 2048):
        for b in (16, 32, 64):
            train = float(train_time_s(b, m, 20.0, 8.0, 200.0)) * (
                1 + noise * rng.standard_normal()
            )
            trans = float(trans_time_s(m, 3.0, -0.8)) * (1 + noise * rng.standard_normal())
            append_sample(path, ProfileSample(m, b, train, trans, **meta))
    append_sample(path, ProfileSample(512, 512, None, None, status="out_of_memory", **meta))
    return path


def write_seed_profile(path):
    lines = [
        f"{b} {m} {float(train_time_s(b, m, 20.0, 8.0, 200.0))!r} {float(trans_time_s(m, 3.0, -0.8))!r}"
        for m in (512, 1024, 2048)
        for b in (16, 32, 64)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_hand_written_coeffs_with_the_six_keys_read(tmp_path):
    path = tmp_path / "coeffs.json"
    path.write_text(json.dumps(HAND_WRITTEN))
    c = read_coefficients(path)
    assert (c.a, c.b, c.m, c.k1, c.k2, c.model_size_mb) == (20.0, 8.0, 200.0, 3.0, -0.8, 44.6)
    assert c.num_params is None and c.transfer is None and c.transfer_model() is None


def test_write_read_round_trip(tmp_path):
    table = TableTransferModel.from_rows(
        [
            {"memory_mb": 512, "object_mb": s, "upload_s": 0.1 * s, "download_s": 0.05 * s}
            for s in (1, 2, 4)
        ]
    )
    c = Coefficients(
        **HAND_WRITTEN, num_params=1234, transfer=table.to_dict(), provenance={"by": "hand"}
    )
    path = tmp_path / "coeffs.json"
    write_coefficients(path, c)
    back = read_coefficients(path)
    assert back == c
    assert back.transfer_model() == table
    assert list(json.loads(path.read_text()))[:7] == [
        "a",
        "b",
        "m",
        "k1",
        "k2",
        "model_size_mb",
        "num_params",
    ]
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    "change,match",
    [
        ({"k2": None}, "k2"),
        ({"a": -1.0}, "a: -1.0 must be > 0"),
        ({"k1": float("nan")}, "k1"),
        ({"model_size_mb": 0}, "model_size_mb"),
        ({"num_params": 2.5}, "num_params"),
        ({"transfer": {"kind": "magic"}}, "unknown transfer model kind"),
        ({"colour": "blue"}, "unknown keys colour"),
    ],
)
def test_bad_coeffs(change, match):
    with pytest.raises(InvalidInput, match=match):
        Coefficients.from_dict({**HAND_WRITTEN, **change})


def test_missing_keys_and_bad_json(tmp_path):
    with pytest.raises(InvalidInput, match="lacks k2, model_size_mb"):
        Coefficients.from_dict(
            {k: v for k, v in HAND_WRITTEN.items() if k not in ("k2", "model_size_mb")}
        )
    path = tmp_path / "coeffs.json"
    path.write_text('{"a": 1,\n "b": }')
    with pytest.raises(InvalidInput, match="line 2: not valid JSON"):
        read_coefficients(path)
    path.write_text("[1, 2]")
    with pytest.raises(InvalidInput, match="JSON object"):
        read_coefficients(path)


def test_null_model_size_is_allowed():
    assert Coefficients.from_dict({**HAND_WRITTEN, "model_size_mb": None}).model_size_mb is None


def test_fit_files_records_where_everything_came_from(tmp_path):
    profile = write_profile(
        tmp_path / "profile.csv", noise=0.02, model="cnn", model_size_mb=0.25, num_params=62006
    )
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    report = fit_files(profile, now=now)
    c = report.coeffs
    assert c.a == pytest.approx(20.0, rel=0.1) and c.k2 == pytest.approx(-0.8, abs=0.05)
    assert (c.model_size_mb, c.num_params) == (0.25, 62006)
    assert c.transfer is None
    p = c.provenance
    assert p["fitted_at"] == "2026-01-02T03:04:05+00:00"
    assert p["profile"]["path"] == str(profile)
    assert len(p["profile"]["sha256"]) == 64
    assert (p["profile"]["runs"], p["profile"]["runs_used"], p["profile"]["runs_skipped"]) == (
        10,
        9,
        1,
    )
    assert p["model_size_mb"] == p["num_params"] == "profile"
    assert p["train"]["mape_pct"] == pytest.approx(report.fit.train.stats.mape_pct)
    assert report.warnings == ()
    json.dumps(report.to_dict(), allow_nan=False)


def test_seed_profile_without_model_size_warns_and_leaves_null(tmp_path):
    report = fit_files(write_seed_profile(tmp_path / "profiling.txt"))
    assert report.coeffs.model_size_mb is None
    assert any("model_size_mb is unknown" in w for w in report.warnings)
    assert report.coeffs.a == pytest.approx(20.0, rel=1e-5)


def test_flags_give_or_override_the_model_size(tmp_path):
    report = fit_files(
        write_seed_profile(tmp_path / "profiling.txt"), model_size_mb=44.6, num_params=11689512
    )
    assert (report.coeffs.model_size_mb, report.coeffs.num_params) == (44.6, 11689512)
    assert report.coeffs.provenance["model_size_mb"] == "--model-size-mb"
    assert report.warnings == ()
    profile = write_profile(tmp_path / "p.csv", model_size_mb=0.25)
    report = fit_files(profile, model_size_mb=0.5)
    assert report.coeffs.model_size_mb == 0.5
    assert any("overrides the profile's model_size_mb 0.25" in w for w in report.warnings)
    with pytest.raises(InvalidInput, match="--model-size-mb"):
        fit_files(profile, model_size_mb=-1.0)


def test_transfer_preset_and_transfer_csv(tmp_path):
    profile = write_profile(tmp_path / "p.csv", model_size_mb=0.25)
    report = fit_files(profile, transfer="aws")
    assert report.coeffs.transfer == {"kind": "preset", "name": "aws"}
    assert report.coeffs.transfer_model().put_s(1, 128) == pytest.approx(0.18)

    rows = [
        {
            "memory_mb": m,
            "object_mb": s,
            "upload_s": 0.05 + s / (m / 20),
            "download_s": 0.02 + s / (m / 10),
            "samples": 1,
        }
        for m in (512, 1024)
        for s in (1, 2, 4, 8, 16)
    ]
    write_transfer_csv(rows, tmp_path / "storage.csv")
    report = fit_files(profile, transfer=str(tmp_path / "storage.csv"))
    assert report.transfer is not None and report.transfer.chosen == "latency_bandwidth"
    assert report.coeffs.transfer["kind"] == "latency_bandwidth"
    assert report.coeffs.transfer_model().put_s(8, 1024) == pytest.approx(0.05 + 8 / (1024 / 20))
    assert report.coeffs.provenance["transfer"]["chosen"] == "latency_bandwidth"
    with pytest.raises(InvalidInput, match="no file"):
        fit_files(profile, transfer=str(tmp_path / "nope.csv"))
