"""``fasdl profile`` on the local platform: real processes, a real file store, real timings.

Kept small for a 2-core machine: the cnn on the 8x8 digits, 2 memory sizes x 2 batch sizes, and
short timed samples. A Python process with torch needs about 320 MB resident here, so a 128 MB
function runs out of memory whatever it trains: that is the out-of-memory pair.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time

import pytest

from fasdl.cli.main import main
from fasdl.models import build_model, count_parameters
from fasdl.perf.transfer import load_transfer, read_transfer_csv
from fasdl.profiler.handler import time_samples
from fasdl.profiler.records import read_profile
from fasdl.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FAST = ["--dataset", "digits", "--iterations", "2", "--warmup", "1", "--sample-s", "0.1", "--timeout", "120"]  # fmt: skip


def _cnn_numel() -> tuple[int, int]:
    from fasdl.training import ModelVector

    model = build_model("cnn", num_classes=10, input_shape=(1, 8, 8))
    return ModelVector.attach(model).numel, count_parameters(model)


def _fasdl(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fasdl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def small_profile(tmp_path_factory):
    """One real profile, shared: cnn, memory 1769 and 3538 MB x batch 8 and 32, plus storage."""
    d = tmp_path_factory.mktemp("profile")
    args = ["profile", "--model", "cnn", "--memory", "3538,1769", "--batch", "32,8", "--out", str(d / "profile.csv"),
            "--store", (d / "store").as_uri(), "--storage", "--storage-out", str(d / "transfer.csv"),
            "--sizes", "1,2,4", "--storage-repeats", "2", "--json", *FAST]  # fmt: skip
    proc = _fasdl(*args)
    assert proc.returncode == 0, proc.stderr
    return d, json.loads(proc.stdout), proc.stderr


def test_profile_writes_one_row_per_pair_measured_one_at_a_time(small_profile):
    d, report, stderr = small_profile
    profile = read_profile(d / "profile.csv")
    numel, num_params = _cnn_numel()
    # Given unsorted, run in ascending order of memory, then batch size.
    assert [(s.memory_mb, s.batch_size) for s in profile.samples] == [
        (1769, 8),
        (1769, 32),
        (3538, 8),
        (3538, 32),
    ]
    assert profile.model == "cnn" and profile.num_params == num_params
    assert profile.model_size_mb == pytest.approx(numel * 4 / 1e6)
    assert report["counts"] == {"ok": 4, "out_of_memory": 0, "failed": 0}
    invocations = [r["invocation"] for r in report["results"]]
    for a, b in itertools.pairwise(invocations):  # one at a time
        assert a["ended_at"] <= b["started_at"]
    for s, r, inv in zip(profile.samples, report["results"], invocations, strict=True):
        assert (
            inv["memory_mb"] == s.memory_mb
            and inv["handler"] == "profile"
            and inv["state"] == "succeeded"
        )
        assert s.ok and s.train_s > 0 and s.trans_s > 0
        assert 100 < s.peak_memory_mb < s.memory_mb  # a torch process, within its memory
        assert s.billed_ms == inv["billed_ms"]
        # The function built the same model on the data's real shape, and timed what was asked.
        details = r["details"]
        assert (
            details["numel"] == numel
            and details["input_shape"] == [1, 8, 8]
            and details["chunks"] == 2
        )
        assert len(details["train_samples_s"]) == 2 and len(details["trans_samples_s"]) == 2
        assert s.train_s == pytest.approx(sum(details["train_samples_s"]) / 2)  # the median of two
        # A training iteration of a batch does more work than copying 117 KB of weights.
        assert s.train_s > s.trans_s
        # The whole job's columns: the start-up is what was billed outside the handler plus the
        # handler's time to a ready model less its data's load (given per sample), within the
        # billed duration; the spread of single iterations; the evaluation per sample, timed once
        # in the driver (the same on every row).
        outside = inv["billed_ms"] / 1000 - details["handler_s"]
        load = details["data_load_s"]
        assert s.startup_s == pytest.approx(outside + details["model_ready_s"] - load)
        n = details["data_samples"]
        assert 1000 < n < 1797  # digits' training set (80 %): fewer than LOAD_SAMPLES, all of it
        assert s.load_s_per_sample == pytest.approx(load / n) and load > 0
        assert 0 < s.startup_s < inv["billed_ms"] / 1000
        assert len(details["train_single_s"]) >= 20 and s.train_cv == details["train_cv"] >= 0
        assert s.eval_s_per_sample == profile.samples[0].eval_s_per_sample > 0
    # The data sample and the transfer objects were removed from the store.
    assert open_store((d / "store").as_uri()).list("profile/") == []
    assert "profile cnn" in stderr  # the progress bar


def test_profile_and_transfer_fit(small_profile, tmp_path, capsys):
    d, _, _ = small_profile
    transfer = d / "transfer.csv"
    assert transfer.read_text().splitlines()[0] == "memory_mb,object_mb,upload_s,download_s,samples"
    rows = read_transfer_csv(transfer)
    assert [(r["memory_mb"], r["object_mb"], r["samples"]) for r in rows] == [
        (m, s, 2) for m in (1769, 3538) for s in (1, 2, 4)
    ]
    assert load_transfer(str(transfer)).put_s(4, 1769) > 0

    code = main(
        [
            "fit",
            str(d / "profile.csv"),
            "--transfer",
            str(transfer),
            "--out",
            str(tmp_path / "c.json"),
            "--json",
        ]
    )
    assert code == 0
    fitted = json.loads(capsys.readouterr().out)
    numel, num_params = _cnn_numel()
    assert fitted["runs_used"] == 4 and fitted["model"] == "cnn"
    coeffs = json.loads((tmp_path / "c.json").read_text())
    assert (
        coeffs["model_size_mb"] == pytest.approx(numel * 4 / 1e6)
        and coeffs["num_params"] == num_params
    )
    assert all(coeffs[k] is not None for k in ("a", "b", "m", "k1", "k2"))
    assert coeffs["transfer"]["kind"] in ("table", "latency_bandwidth")


def test_out_of_memory_pair_is_recorded_and_the_run_goes_on(tmp_path):
    out = tmp_path / "p.csv"
    args = ["profile", "--model", "cnn", "--memory", "1769,128", "--batch", "8", "--out", str(out),
            "--store", (tmp_path / "store").as_uri(), "--no-progress", "--json", *FAST]  # fmt: skip
    proc = _fasdl(*args, "--storage", "--sizes", "1,2,4", "--storage-repeats", "1")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["counts"] == {"ok": 1, "out_of_memory": 1, "failed": 0}
    oom, ok = read_profile(out).samples  # 128 MB first: it ran out of memory, then 1769 MB ran
    assert (oom.memory_mb, oom.status, oom.train_s, oom.trans_s) == (
        128,
        "out_of_memory",
        None,
        None,
    )
    assert oom.peak_memory_mb > 128 and oom.billed_ms > 0
    assert (ok.memory_mb, ok.status) == (1769, "ok") and ok.train_s > 0
    assert "128 MB, batch 8: out_of_memory" in proc.stderr
    # The transfer function imports no torch: it runs at 128 MB.
    transfer = report["transfer"]["memory_sizes"]
    assert [(t["memory_mb"], t["state"]) for t in transfer] == [
        (128, "succeeded"),
        (1769, "succeeded"),
    ]
    assert transfer[0]["peak_memory_mb"] < 128
    assert len(read_transfer_csv(tmp_path / "transfer.csv")) == 6  # next to --out by default

    # The file exists: refused without --resume (exit 2), and --resume has nothing left to run.
    before = out.read_text()
    assert main(args) == 2
    t0 = time.monotonic()
    assert main([*args, "--resume"]) == 0
    assert out.read_text() == before
    assert time.monotonic() - t0 < 30  # no function was started (each takes ~10 s here)


def test_an_interrupted_profile_keeps_its_rows_and_resumes(tmp_path):
    out, store = tmp_path / "p.csv", (tmp_path / "store").as_uri()
    args = ["profile", "--model", "cnn", "--memory", "1769,3538", "--batch", "8", "--out", str(out),
            "--store", store, "--no-progress", *FAST]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "fasdl.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out.exists() and len(out.read_text().splitlines()) >= 2):  # the header and a row
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no row within 240 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    (first,) = read_profile(out).samples
    assert (first.memory_mb, first.status) == (1769, "ok")
    assert open_store(store).list("profile/") == []  # its data sample went with it

    proc2 = _fasdl(*args, "--resume", "--json")
    assert proc2.returncode == 0, proc2.stderr
    assert [(s.memory_mb, s.status) for s in read_profile(out).samples] == [
        (1769, "ok"),
        (3538, "ok"),
    ]
    resumed = [r["resumed"] for r in json.loads(proc2.stdout)["results"]]
    assert resumed == [True, False]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"--model": "nosuchnet"}, "model"),
        ({"--memory": "64"}, "memory"),
        ({"--memory": "20000"}, "memory"),
        ({"--batch": "0"}, "batch"),
        ({"--memory": ","}, "memory"),
        ({"--batch": ","}, "batch"),
        ({"--store": "ftp://host/x"}, "store"),
        ({"--store": "memory://x"}, "store"),
        ({"--dataset": "cifar10:/nonexistent"}, "dataset"),
        ({"--iterations": "0"}, "iterations"),
        ({"--timeout": "1000"}, "timeout"),
        ({"--storage": None, "--sizes": "1,2"}, "sizes"),
        ({"--sizes": "1,2,4"}, "storage"),
    ],
)
def test_bad_input_exits_2_before_anything_runs(tmp_path, capsys, changes, field):
    out = tmp_path / "p.csv"
    flags = {
        "--model": "cnn",
        "--memory": "1769",
        "--batch": "8",
        "--out": str(out),
        "--store": (tmp_path / "s").as_uri(),
    }
    flags.update(changes)
    argv = ["profile"] + [
        x for flag, value in flags.items() for x in (flag, value) if x is not None
    ]
    assert main(argv) == 2
    assert f"error: --{field}:" in capsys.readouterr().err  # the flag the user typed
    assert not out.exists() and not (tmp_path / "s").exists()  # nothing ran, nothing was written


def test_cli_help_and_usage_errors():
    help_ = subprocess.run(
        [sys.executable, "-m", "fasdl.cli.main", "profile", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_.returncode == 0
    for flag in (
        "--model",
        "--memory",
        "--batch",
        "--out",
        "--storage",
        "--sizes",
        "--resume",
        "--json",
    ):
        assert flag in help_.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "fasdl.cli.main", "profile", "--model", "cnn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "--memory" in missing.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fasdl.cli.main",
            "profile",
            "--model",
            "cnn",
            "--memory",
            "1024,abc",
            "--batch",
            "8",
            "--out",
            "x.csv",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "memory" in bad.stderr


def test_time_samples_average_blocks_and_respect_the_deadline():
    calls = []

    def work() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.001)

    samples = time_samples(work, samples=3, sample_s=0.02, deadline=time.monotonic() + 60)
    assert len(samples) == 3
    assert len(calls) >= 3 * 5  # each block is many calls long
    assert all(0.001 <= s < 0.02 for s in samples)

    slow = time_samples(
        lambda: time.sleep(0.05), samples=5, sample_s=0.01, deadline=time.monotonic() + 0.12
    )
    assert 1 <= len(slow) < 5 and all(s >= 0.05 for s in slow)
