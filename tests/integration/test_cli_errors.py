"""Exit codes as a user sees them: 2 only for the user's mistakes (naming the flag they typed),
1 for failures and for faults of the program, even when the fault is a ValueError."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FASDL = [sys.executable, "-m", "fasdl.cli.main"]
PROFILE = ["profile", "--model", "cnn", "--memory", "1769", "--out", "p.csv"]
OPTIMIZE = [
    "optimize",
    "--coeffs",
    "c.json",
    "--epochs",
    "1",
    "--samples",
    "100",
    "--deadline",
    "60",
]
COEFFS = {"a": 400.0, "b": 8.0, "m": 50.0, "k1": 2.0, "k2": -0.3, "model_size_mb": 0.12}


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FASDL, *argv], capture_output=True, text=True, timeout=120, cwd=cwd)


def _with_run_raising(error: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``fasdl optimize ...`` whose ``run`` raises ``error`` (an expression) from inside."""
    code = (
        "import sys\n"
        "import fasdl.cli.optimize as o\n"
        "from fasdl.errors import CorruptObject\n"
        f"def run(args):\n    raise {error}\n"
        "o.run = run\n"
        "from fasdl.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["optimize", "--coeffs", "c.json", "--epochs", "1", "--samples", "10", "--deadline", "9"]
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_an_internal_value_error_is_a_failure_not_bad_input(tmp_path) -> None:
    out = _with_run_raising("ValueError('cannot reshape array of size 3')", tmp_path)
    assert out.returncode == 1, out.stderr
    assert (
        "fasdl optimize: internal error: ValueError: cannot reshape array of size 3" in out.stderr
    )
    assert "Traceback" in out.stderr  # what to report
    assert "error: cannot reshape" not in out.stderr  # not worded as the user's mistake


def test_a_corrupt_object_is_a_failure(tmp_path) -> None:
    out = _with_run_raising("CorruptObject('tmp/j/ckpt/w0', 'truncated')", tmp_path)
    assert out.returncode == 1, out.stderr
    assert "fasdl optimize: failed: object 'tmp/j/ckpt/w0' is corrupt: truncated" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_file_that_cannot_be_written_is_a_failure(tmp_path) -> None:
    out = _with_run_raising("PermissionError(13, 'Permission denied', 'plan.json')", tmp_path)
    assert out.returncode == 1, out.stderr
    assert "fasdl optimize: failed: [Errno 13] Permission denied: 'plan.json'" in out.stderr


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["train", "-W", "2", "-K", "0"], "error: -K/--aggregators: 0 is below 1"),
        (["train", "-W", "2", "-K", "3"], "error: -K/--aggregators: K = 3 aggregators"),
        (["train", "--memory", "64"], "error: --memory: 64 MB is outside 128–10,240 MB"),
        (["train", "--func-time", "0"], "error: --func-time: 0 s is outside 1–900 s"),
        (["train", "--lr", "-1"], "error: --lr: -1 is not > 0"),
        (["smoke", "--memory", "100"], "error: --memory: 100 MB is outside"),
        (["smoke", "--timeout", "901"], "error: --timeout: 901 s is outside"),
        (
            [*PROFILE, "--batch", "0"],
            "error: --batch: 0 is below 1",
        ),
        (
            [*PROFILE, "--batch", "8", "--timeout", "0"],
            "error: --timeout: 0 s is outside",
        ),
        (
            [*OPTIMIZE, "--func-time", "1000"],
            "error: --func-time: 1000 s is outside 1–900 s",
        ),
        (
            [*OPTIMIZE, "--max-workers", "0"],
            "error: --max-workers: 0 is below 1",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_flag_typed(tmp_path, argv, shown) -> None:
    (tmp_path / "c.json").write_text(json.dumps(COEFFS))
    store = tmp_path / "store"
    extra = ["--store", store.as_uri(), "--no-progress"] if argv[0] == "train" else []
    out = _run(*argv, *extra, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert shown in out.stderr, out.stderr
    for internal in ("num_aggregators", "memory_mb", "func_time_s", "timeout_s", "batch_sizes"):
        assert internal not in out.stderr
    assert not store.exists() and not (tmp_path / "p.csv").exists()


def test_a_bad_seed_payload_names_the_payload_key(tmp_path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"train_net": "mlp", "pattern_k": "9", "num_workers": "3"}))
    out = _run(
        "train", "--payload", str(payload), "--store", (tmp_path / "s").as_uri(), cwd=tmp_path
    )
    assert out.returncode == 2, out.stderr
    assert f"error: pattern_k in {payload}: K = 9 aggregators is more than W = 3" in out.stderr
