"""``fasdl report``, ``status`` and ``runs`` on real jobs: three on the local platform with a file
store (one with a retried round, one that fails, one watched while it runs), one inline with a
memory store (the commands run in the job's process, the only one that sees that store) and one
through Lithops' localhost backend with the S3 store on SeaweedFS.

The local job's report is opened in a real headless Chromium (``fasdl.testing.browser``): no
console error, every image decoded with a size, a screenshot that is not blank. The screenshot
is kept beside the test's files; ``FASDL_UPDATE_SCREENSHOT=1`` also copies it to
docs/report-screenshot.png, the one the README shows.

Nothing waits a fixed time: the live job is polled until its iteration advances, with a
deadline; its iterations last at least 0.5 s (a worker test hook) so there is something to see.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg

from fasdl.cli.main import main
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import run_job
from fasdl.kreduce.worker import KILL_AT_ENV, MIN_ITERATION_ENV
from fasdl.store.memory import MemoryStore
from fasdl.testing import SeaweedServer
from fasdl.testing.browser import INSTALL_HINT, check_page, find_chromium

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FASDL = [sys.executable, "-m", "fasdl.cli.main"]
DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "report-screenshot.png"
# digits: 1,437 training samples; W=3 with batches 32/16/16 = 64 per iteration: 22 per epoch
JOB_FLAGS = ["--model", "mlp", "--dataset", "digits", "-W", "3", "-K", "1"]
JOB_FLAGS += ["--batch-agg", "32", "--batch-wor", "16", "--memory", "512", "--no-progress"]


def _fasdl(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FASDL, *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def _json(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class LocalJobs:
    """Three jobs in one file store, started one after the other: ``done`` (a round retried),
    ``failed`` and ``live``; ``seen`` are the iterations ``fasdl status`` showed while ``live``
    ran, in order."""

    def __init__(self, store: str, tmp: Path) -> None:
        self.store = store
        self.tmp = tmp
        self.seen: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def local_jobs(tmp_path_factory: pytest.TempPathFactory) -> LocalJobs:
    tmp = tmp_path_factory.mktemp("reports")
    jobs = LocalJobs((tmp / "store").as_uri(), tmp)
    # done: 22 iterations in rounds of 8; worker 2 crashes in round 1's first attempt (attempt
    # 1) and the round is retried: the report's timeline shows it.
    out = _fasdl(
        "train", *JOB_FLAGS, "--epochs", "1", "--checkpoint-every", "8",
        "--store", jobs.store, "--job-id", "done", "--json",
        "--tensorboard", str(tmp / "tb"),
        env={KILL_AT_ENV: "2:12:1"},
    )  # fmt: skip
    jobs.summary = _json(out)  # type: ignore[attr-defined]
    # The one retry is the crash's. (A CI run once saw round 1's first attempt fail as it
    # started instead: a worker's fork of `ldconfig` made the platform count its memory twice;
    # fasdl.training.allocator no longer forks, and the platform counts a fork's own pages only.)
    (retry,) = jobs.summary["retries"]  # type: ignore[attr-defined]
    assert (retry["round"], retry["attempt"], retry["worker"]) == (1, 1, 2), retry
    assert "SIGKILL" in retry["reason"], retry
    # failed: worker 1 crashes at iteration 3 of every attempt, and no retry is allowed
    out = _fasdl(
        "train", *JOB_FLAGS, "--epochs", "1", "--retries", "0",
        "--store", jobs.store, "--job-id", "failed", "--json",
        env={KILL_AT_ENV: "1:3:*"},
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    failed_report = Path(jobs.store.removeprefix("file://")) / "output/failed/report/report.html"
    assert f"the report of job failed: {failed_report}" in out.stderr
    # live: iterations of at least 0.5 s; status is polled while it runs
    live = subprocess.Popen(
        [*FASDL, "train", *JOB_FLAGS, "--epochs", "1", "--store", jobs.store,
         "--job-id", "live", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, MIN_ITERATION_ENV: "0.5"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while live.poll() is None and time.monotonic() < deadline:
            status = _status_in_process(jobs.store, "live")
            if (
                status is not None
                and status["state"] == "running"
                and status["iteration"]
                and (not jobs.seen or status["iteration"] > jobs.seen[-1]["iteration"])
            ):
                jobs.seen.append(status)
            time.sleep(0.2)  # a poll interval, not a synchronisation: the check is above
        stdout, stderr = live.communicate(timeout=300)
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert live.returncode == 0, stderr
    jobs.live_summary = json.loads(stdout)  # type: ignore[attr-defined]
    return jobs


def _status_in_process(store: str, job_id: str) -> dict[str, Any] | None:
    """``fasdl status --json`` run in this process (quick to poll); None before the job exists."""
    buf = io.StringIO()
    from contextlib import redirect_stderr, redirect_stdout

    with redirect_stdout(buf), redirect_stderr(io.StringIO()):
        code = main(["status", job_id, "--store", store, "--json"])
    if code == 2:  # no job.json yet
        return None
    assert code == 0
    result: dict[str, Any] = json.loads(buf.getvalue())
    return result


def test_status_shows_a_live_job_advancing(local_jobs: LocalJobs) -> None:
    seen = local_jobs.seen
    assert len(seen) >= 2, f"status saw the live job at iterations {[s['iteration'] for s in seen]}"
    iterations = [s["iteration"] for s in seen]
    assert iterations == sorted(set(iterations))
    total = seen[0]["total_iterations"]
    assert total == 22 and all(0 < i <= total for i in iterations)
    for s in seen:
        assert s["seconds_per_iteration"] >= 0.5  # the hook's floor: the pace is measured
        assert s["time_left_s"] is not None and s["time_left_s"] >= 0
        assert s["cost_is_estimate"] and s["cost_usd"] > 0
        assert len(s["workers"]) == 3
        assert [w["role"] for w in s["workers"]] == ["aggregator", *["non-aggregator"] * 2]
    assert any(all(w["state"].startswith("training") for w in s["workers"]) for s in seen)
    # the time left shrinks as the job advances
    assert seen[-1]["time_left_s"] < seen[0]["time_left_s"]


def test_status_of_finished_and_failed_jobs(local_jobs: LocalJobs) -> None:
    done = _json(_fasdl("status", "done", "--store", local_jobs.store, "--json"))
    summary = local_jobs.summary  # type: ignore[attr-defined]
    assert done["state"] == "finished"
    assert done["iteration"] == done["total_iterations"] == 22
    assert done["cost_usd"] == pytest.approx(summary["cost_usd"]["total"])
    assert not done["cost_is_estimate"] and done["time_left_s"] == 0
    assert done["retries"] == 1 and done["test_accuracy"] == summary["test_accuracy"]

    failed = _json(_fasdl("status", "failed", "--store", local_jobs.store, "--json"))
    assert failed["state"] == "failed" and failed["iteration"] < 22
    assert failed["workers"][1]["state"].startswith("failed")
    assert not failed["cost_is_estimate"] and failed["cost_usd"] > 0  # its records are kept

    text = _fasdl("status", "done", "--store", local_jobs.store)
    assert text.returncode == 0
    assert "job done: finished, round 3, iteration 22/22" in text.stdout
    assert "worker 2" in text.stdout


def test_runs_lists_the_jobs_newest_first(local_jobs: LocalJobs) -> None:
    rows = _json(_fasdl("runs", "--store", local_jobs.store, "--json"))
    assert [r["job_id"] for r in rows] == ["live", "failed", "done"]
    assert [r["state"] for r in rows] == ["finished", "failed", "finished"]
    assert rows[2]["test_accuracy"] == local_jobs.summary["test_accuracy"]  # type: ignore[attr-defined]
    assert (rows[2]["num_workers"], rows[2]["num_aggregators"], rows[2]["memory_mb"]) == (3, 1, 512)
    text = _fasdl("runs", "--store", local_jobs.store)
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["job", "model", "pattern"]
    assert [line.split()[0] for line in lines[1:]] == ["live", "failed", "done"]
    assert "3/1/512" in lines[1] and "failed" in lines[2]


def test_train_writes_the_report_and_tensorboard(local_jobs: LocalJobs) -> None:
    summary = local_jobs.summary  # type: ignore[attr-defined]
    page = Path(summary["report"])
    assert page == Path(local_jobs.store.removeprefix("file://")) / "output/done/report/report.html"
    assert page.is_file()
    for name in ("loss.png", "phases.png", "timeline.png", "cost.png"):
        assert (page.parent / name).stat().st_size > 0
    assert Path(summary["tensorboard"]).name == "done"
    events = list(Path(summary["tensorboard"]).glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(summary["tensorboard"])))
    acc.Reload()
    losses = acc.Scalars("loss/worker0")
    assert [e.step for e in losses] == list(range(1, 23))
    assert acc.Scalars("test/accuracy")[0].value == pytest.approx(summary["test_accuracy"])


def test_the_report_opens_in_chromium(local_jobs: LocalJobs) -> None:
    chromium = find_chromium()
    assert chromium is not None, f"the report test needs Chromium: {INSTALL_HINT}"
    out_dir = local_jobs.tmp / "report-done"
    out = _json(
        _fasdl("report", "done", "--store", local_jobs.store, "--out", str(out_dir), "--json")
    )
    page = Path(out["report"])
    assert page == out_dir / "report.html"
    html = page.read_text()
    assert "fasdl job done" in html and "round 1, attempt 1: worker 2 failed" in html
    assert html.count("data:image/png;base64,") == 4  # no prediction: the job had no plan
    check = check_page(page, chromium=chromium)
    assert check.console_errors == [], check.log
    assert len(check.images) == 4
    assert all(w > 0 and h > 0 for w, h in check.images), check.images
    shot = local_jobs.tmp / "report-screenshot.png"
    shot.write_bytes(check.screenshot)
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] == check.height and pixels.shape[1] == 1100
    assert float(np.std(pixels)) > 0.05, "the screenshot is blank"
    assert float(np.mean(pixels[..., :3] < 0.9)) > 0.05, "the screenshot is almost all white"
    print(f"report screenshot: {shot}")
    if os.environ.get("FASDL_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_the_report_of_a_failed_job(local_jobs: LocalJobs) -> None:
    out = _json(
        _fasdl(
            "report", "failed", "--store", local_jobs.store, "--json",
            "--out", str(local_jobs.tmp / "report-failed"),
        )
    )  # fmt: skip
    html = Path(out["report"]).read_text()
    assert "failed" in html and "worker 1 failed" in html


def test_bad_input_names_the_flag(local_jobs: LocalJobs, tmp_path: Path) -> None:
    for command in (["report", "nope"], ["status", "nope"]):
        out = _fasdl(*command, "--store", local_jobs.store)
        assert out.returncode == 2
        assert "no job 'nope'" in out.stderr and "fasdl runs" in out.stderr
    out = _fasdl("runs", "--store", "nowhere")
    assert out.returncode == 2 and "--store" in out.stderr
    before = sorted(p.name for p in tmp_path.iterdir())
    out = _fasdl("train", *JOB_FLAGS, "--store", tmp_path.as_uri(), "--tensorboard", "x", "-W", "0")
    assert out.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.fixture
def memory_store() -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield f"memory://{name}"
    MemoryStore.discard(name)


def test_inline_platform_and_memory_store(
    memory_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The memory store lives in this process: the job and the commands run here."""
    cfg = JobConfig(
        model="mlp", dataset="digits", num_workers=2, num_aggregators=1, batch_size_agg=32,
        batch_size_wor=32, epochs=1, memory_mb=512, store=memory_store, platform="inline",
        job_id="inl", max_iterations_per_invocation=10,
    )  # fmt: skip
    summary = run_job(cfg)
    assert main(["report", "inl", "--store", memory_store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"] == (
        f"{memory_store}/output/inl/report/report.html"
    )
    assert main(["report", "inl", "--store", memory_store, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert (tmp_path / "timeline.png").stat().st_size > 0
    assert main(["status", "inl", "--store", memory_store, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "finished" and status["round"] == summary.rounds == 3
    assert main(["runs", "--store", memory_store, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["job_id"], r["state"], r["iteration"]) for r in rows] == [
        ("inl", "finished", summary.iterations)
    ]


@pytest.mark.s3
@pytest.mark.skipif(
    importlib.util.find_spec("lithops") is None, reason="pip install 'fasdl[lithops]'"
)
def test_lithops_platform_and_s3_store(
    seaweed: SeaweedServer, s3_bucket: str, tmp_path: Path
) -> None:
    store = seaweed.url(s3_bucket, f"reports-{uuid.uuid4().hex[:8]}")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITHOPS_", "FASDL_"))}
    env["HOME"] = str(home)
    out = subprocess.run(
        [*FASDL, "train", "--platform", "lithops", "--backend", "localhost", *JOB_FLAGS,
         "--epochs", "1", "--checkpoint-every", "11", "--store", store, "--job-id", "lit",
         "--json"],
        capture_output=True, text=True, timeout=800, env=env, cwd=tmp_path,
    )  # fmt: skip
    summary = _json(out)
    base, options = store.split("?")
    assert summary["report"] == f"{base}/output/lit/report/report.html?{options}"
    report = _json(
        _fasdl("report", "lit", "--store", store, "--out", str(tmp_path / "r"), "--json")
    )
    html = Path(report["report"]).read_text()
    assert html.count("data:image/png;base64,") == 4 and "lithops" in html
    status = _json(_fasdl("status", "lit", "--store", store, "--json"))
    assert status["state"] == "finished" and status["round"] == 2
    assert status["cost_usd"] == pytest.approx(summary["cost_usd"]["total"])
    rows = _json(_fasdl("runs", "--store", store, "--json"))
    assert [(r["job_id"], r["state"]) for r in rows] == [("lit", "finished")]


def test_a_planned_jobs_report_sets_the_prediction_against_the_run(tmp_path: Path) -> None:
    coeffs = tmp_path / "coeffs.json"
    coeffs.write_text(
        json.dumps(
            {"a": 400.0, "b": 8.0, "m": 50.0, "k1": 2.0, "k2": -0.3, "model_size_mb": 0.12,
             "startup_fixed_s": 0.5, "startup_cpu_s": 0.5, "train_cv": 0.1,
             "eval_s_per_sample": 1e-4}
        )
    )  # fmt: skip
    plan = _fasdl(
        "optimize", "--coeffs", str(coeffs), "--epochs", "1", "--samples", "300",
        "--deadline", "600", "--max-workers", "3", "--max-memory", "1024",
        "--max-global-batch", "64", "--test-samples", "60", "--json",
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    (tmp_path / "plan.json").write_text(plan.stdout)
    summary = _json(
        _fasdl(
            "train", "--plan", str(tmp_path / "plan.json"), "--model", "mlp",
            "--dataset", "synthetic:300", "--platform", "inline",
            "--store", (tmp_path / "s").as_uri(), "--job-id", "planned", "--json", "--no-progress",
        )
    )  # fmt: skip
    page = Path(summary["report"])
    html = page.read_text()
    assert (page.parent / "prediction.png").stat().st_size > 0
    assert html.count("data:image/png;base64,") == 5 and "Plan against measurement" in html
    p = summary["prediction"]
    assert f"{p['time_s']:.6g} / {p['measured_time_s']:.6g}" in html
    for name in p["terms"]:
        assert f"<td>{name}</td>" in html
