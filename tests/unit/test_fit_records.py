"""The profile file: our CSV, the seed's profiling.txt, and appending one run at a time."""

from __future__ import annotations

import pytest

from fasdl.errors import InvalidInput
from fasdl.profiler.records import PROFILE_COLUMNS, ProfileSample, append_sample, read_profile

HEADER = ",".join(PROFILE_COLUMNS)


def sample(memory_mb=1024, batch_size=32, train_s=0.5, trans_s=0.01, **kw):
    kw.setdefault("model", "cnn")
    kw.setdefault("model_size_mb", 0.25)
    kw.setdefault("num_params", 62006)
    return ProfileSample(memory_mb, batch_size, train_s, trans_s, **kw)


def test_appended_runs_read_back_equal_and_each_is_on_disk_at_once(tmp_path):
    path = tmp_path / "profile.csv"
    runs = [
        sample(512, 16, 0.123456789, 0.0201, peak_memory_mb=301.5, billed_ms=640.0),
        sample(512, 256, None, None, status="out_of_memory", peak_memory_mb=512.0),
        sample(3008, 64, 1e-3, 2.5e-4),
        sample(128, 8, None, None, status="failed"),
    ]
    for i, run in enumerate(runs, start=1):
        append_sample(path, run)
        # What an interrupted profile keeps: every run appended so far, readable.
        assert read_profile(path).samples == tuple(runs[:i])
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    assert len(lines) == 1 + len(runs)
    profile = read_profile(path)
    assert profile.format == "csv"
    assert (profile.model, profile.model_size_mb, profile.num_params) == ("cnn", 0.25, 62006)
    assert [s.memory_mb for s in profile.ok_samples] == [512, 3008]
    assert profile.count("out_of_memory") == 1


def test_append_refuses_a_file_that_is_not_a_profile(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(InvalidInput, match="not a fasdl profile"):
        append_sample(path, sample())
    assert path.read_text() == "x,y\n1,2\n"


def test_csv_with_only_the_required_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("batch_size,memory_mb,trans_s,train_s\n16,512,0.02,0.7\n\n32,1024,0.01,0.6\n")
    profile = read_profile(path)
    assert profile.samples == (
        ProfileSample(512, 16, 0.7, 0.02),
        ProfileSample(1024, 32, 0.6, 0.01),
    )
    assert profile.model_size_mb is None and profile.num_params is None


def test_seed_profiling_txt_parses(tmp_path):
    path = tmp_path / "profiling.txt"
    path.write_text("16 512 0.6811 0.0209\n32 512 1.1347 0.0196\n\n64   1024.0 1.17\t0.0121\n")
    profile = read_profile(path)
    assert profile.format == "seed"
    assert profile.samples == (
        ProfileSample(512, 16, 0.6811, 0.0209),
        ProfileSample(512, 32, 1.1347, 0.0196),
        ProfileSample(1024, 64, 1.17, 0.0121),
    )
    assert profile.model_size_mb is None and profile.num_params is None


@pytest.mark.parametrize(
    "text,match",
    [
        ("16 512 0.68 0.02\n32 512 1.13\n", "line 2: 3 fields"),
        ("16 512 0.68 0.02\n32 512 fast 0.02\n", "line 2"),
        ("16 512 0.68 0.02\n32 512 0 0.02\n", "line 2.*train_s"),
        ("16 512 0.68 0.02\n16.5 512 0.7 0.02\n", "line 2.*batch_size"),
        ("16 64 0.68 0.02\n", r"line 1.*64 MB is outside 128–10,240"),
        ("16 20480 0.68 0.02\n", "outside 128"),
    ],
)
def test_malformed_seed_lines_are_named(tmp_path, text, match):
    path = tmp_path / "profiling.txt"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=match):
        read_profile(path)


@pytest.mark.parametrize(
    "rows,match",
    [
        ("512,16,0.7,0.02\n1024,16,abc,0.02\n", "line 3.*train_s.*'abc'"),
        ("512,16,0.7,0.02\n1024,16,-0.5,0.02\n", "line 3.*train_s.*> 0"),
        ("512,16,0.7,0.02\n1024,16,,0.02\n", "line 3.*train_s.*missing"),
        ("512,16,0.7,0.02,,,maybe\n", "line 2.*status"),
        ("100,16,0.7,0.02\n", "line 2.*outside 128"),
        (
            "512,16,0.7,0.02,,,ok,cnn,0.25\n512,32,0.9,0.02,,,ok,cnn,0.5\n",
            "different model_size_mb",
        ),
        (
            "512,16,0.7,0.02,,,ok,cnn,0.25,10,0.5,0.0001,0.1,0.001,0.2,0.3,0.05,extra\n",
            "line 2.*more cells",
        ),
        ("512,16,0.7,0.", "line 2.*trans_s.*cut short"),  # a row cut off mid-write
    ],
)
def test_malformed_csv_lines_are_named(tmp_path, rows, match):
    path = tmp_path / "profile.csv"
    path.write_text(HEADER + "\n" + rows)
    with pytest.raises(InvalidInput, match=match):
        read_profile(path)


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "is empty"),
        ("\n  \n# nothing yet\n", "is empty"),
        (HEADER + "\n", "no runs"),
        ("memory_mb,train_s\n1,2\n", "lacks the columns batch_size, trans_s"),
    ],
)
def test_empty_or_headless_profiles(tmp_path, text, match):
    path = tmp_path / "profile.csv"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=match):
        read_profile(path)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInput, match="no file"):
        read_profile(tmp_path / "nope.csv")


def test_sample_validation():
    assert ProfileSample(1024.0, 8, 1.0, 1.0).memory_mb == 1024  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="batch_size"):
        ProfileSample(1024, 0, 1.0, 1.0)
    with pytest.raises(InvalidInput, match="trans_s"):
        ProfileSample(1024, 8, 1.0, None)
    with pytest.raises(InvalidInput, match="num_params"):
        ProfileSample(1024, 8, 1.0, 1.0, num_params=0)
    assert ProfileSample(1024, 8, None, None, status="out_of_memory").ok is False
