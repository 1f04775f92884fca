"""`fasdl fit` as a user runs it: a subprocess of the installed entry point."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fasdl.cli.main import main
from fasdl.profiler.fit import train_time_s, trans_time_s
from fasdl.profiler.records import ProfileSample, append_sample

FASDL = shutil.which("fasdl") or str(Path(sys.executable).with_name("fasdl"))


def fasdl(*args, cwd):
    return subprocess.run(
        [FASDL, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.fixture
def profile(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "profile.csv"
    for m in (512, 1024, 1769, 3008):
        for b in (16, 32, 64, 128):
            if (m, b) == (512, 128):
                append_sample(
                    path,
                    ProfileSample(
                        m,
                        b,
                        None,
                        None,
                        status="out_of_memory",
                        model="resnet18",
                        model_size_mb=44.6,
                    ),
                )
                continue
            train = float(train_time_s(b, m, 20.0, 8.0, 200.0)) * (1 + 0.03 * rng.standard_normal())
            trans = float(trans_time_s(m, 3.0, -0.8)) * (1 + 0.03 * rng.standard_normal())
            append_sample(
                path,
                ProfileSample(
                    m, b, train, trans, model="resnet18", model_size_mb=44.6, num_params=11689512
                ),
            )
    return path


def test_text_output_coeffs_and_plot(tmp_path, profile):
    r = fasdl("fit", profile, "--out", "coeffs.json", "--plot", "fit.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    coeffs = json.loads((tmp_path / "coeffs.json").read_text())
    for key, line in (
        ("a", "a = "),
        ("b", "b = "),
        ("m", "m = "),
        ("k1", "k1 = "),
        ("k2", "k2 = "),
    ):
        assert f"{line}{coeffs[key]:.6g}" in r.stdout
    assert coeffs["a"] == pytest.approx(20.0, rel=0.1)
    assert coeffs["model_size_mb"] == 44.6 and coeffs["num_params"] == 11689512
    assert "15 fitted, 1 skipped" in r.stdout
    assert r.stdout.count("leave-one-out") == 2 and r.stdout.count("R² ") == 2
    mape = coeffs["provenance"]["train"]["mape_pct"]
    assert f"MAPE {mape:.1f} %" in r.stdout
    png = (tmp_path / "fit.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_json_output_for_a_seed_profile_with_the_aws_preset(tmp_path):
    seed = tmp_path / "profiling.txt"
    seed.write_text(
        "".join(
            f"{b} {m} {float(train_time_s(b, m, 5.0, 2.0, -100.0))!r} {float(trans_time_s(m, 1.5, -1.0))!r}\n"
            for m in (256, 1024, 2048)
            for b in (8, 32, 64)
        )
    )
    r = fasdl(
        "fit",
        seed,
        "--out",
        "c.json",
        "--transfer",
        "aws",
        "--num-params",
        "62006",
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["train"]["a"] == pytest.approx(5.0, rel=1e-4)
    assert report["train"]["m"] == pytest.approx(-100.0, rel=1e-3)
    assert report["trans"]["k2"] == pytest.approx(-1.0, rel=1e-4)
    assert report["train"]["loo_points"] == 9 and report["train"]["r2"] > 0.999
    assert report["model_size_mb"] is None and report["num_params"] == 62006
    assert report["transfer"] == {"source": "preset:aws", "chosen": "table"}
    assert "model_size_mb is unknown" in r.stderr
    coeffs = json.loads((tmp_path / "c.json").read_text())
    assert coeffs["transfer"] == {"kind": "preset", "name": "aws"}
    assert coeffs["model_size_mb"] is None


def test_a_bad_profile_exits_2_with_the_reason(tmp_path):
    (tmp_path / "profiling.txt").write_text("16 512 0.5 0.01\n32 1024 0.4 0.01\n")
    r = fasdl("fit", "profiling.txt", "--out", "c.json", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("fasdl fit: error: profile: too few runs"), r.stderr
    assert "at least 4 successful runs" in r.stderr and "there are 2 runs" in r.stderr
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "is empty"),
        ("16 512 0.5 0.01\n32 50000 0.4 0.01\n", "line 2.*outside 128"),
        ("16 512 -0.5 0.01\n", "line 1.*> 0"),
        ("memory_mb,batch_size,train_s\n", "lacks the columns trans_s"),
    ],
)
def test_bad_profiles_in_process(tmp_path, capsys, content, message):
    (tmp_path / "profile.txt").write_text(content)
    assert main(["fit", str(tmp_path / "profile.txt"), "--out", str(tmp_path / "c.json")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "c.json").exists()


def test_help_and_missing_out(tmp_path):
    r = fasdl("fit", "--help", cwd=tmp_path)
    assert r.returncode == 0
    for flag in (
        "--out",
        "--plot",
        "--transfer",
        "--json",
        "--model-size-mb",
        "--num-params",
        "a·(B + b)/(M + m)",
    ):
        assert flag in r.stdout
    r = fasdl("fit", "profile.csv", cwd=tmp_path)
    assert r.returncode == 2 and "--out" in r.stderr


def test_output_into_a_missing_directory_is_a_user_error(tmp_path, profile, capsys):
    assert main(["fit", str(profile), "--out", str(tmp_path / "no" / "c.json")]) == 2
    assert "--out: the directory" in capsys.readouterr().err
    assert (
        main(
            [
                "fit",
                str(profile),
                "--out",
                str(tmp_path / "c.json"),
                "--plot",
                str(tmp_path / "no" / "f.png"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "c.json").exists()
