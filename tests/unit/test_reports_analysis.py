"""The reports' pure parts on hand-made runs: the timeline's workers, rounds and failed
attempts, the status of a live job (pace, time left, cost estimate), the order of ``runs``, the
page's figures, and the readers' tolerance of older logs and of partial predictions."""

from __future__ import annotations

import base64
import io
import json
import re
import time

import pytest
from matplotlib import image as mpimg

from fasdl.errors import CorruptObject
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import JobSummary
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.logs import IterationLog, Progress
from fasdl.kreduce.messages import WorkerResult
from fasdl.kreduce.state import JobState, Lease, Retry
from fasdl.optimizer.accuracy import PredictionCheck, Term
from fasdl.platform.base import InvocationRecord
from fasdl.pricing import load_prices
from fasdl.reports import analysis
from fasdl.reports.report import build_report
from fasdl.reports.run import RunData, _prediction

PRICES = load_prices()
CFG = JobConfig(
    model="mlp",
    dataset="digits",
    num_workers=2,
    num_aggregators=1,
    batch_size_agg=32,
    batch_size_wor=16,
    epochs=1,
    memory_mb=1024,
    store="memory://x",
    platform="inline",
    job_id="j",
)


def _record(start: float, end: float, state: str = "succeeded") -> InvocationRecord:
    ms = (end - start) * 1000
    return InvocationRecord(
        request_id="r",
        handler="kreduce_worker",
        memory_mb=1024,
        timeout_s=900,
        state=state,
        started_at=start,
        ended_at=end,
        duration_ms=ms,
        billed_ms=int(ms),
        gb_s=ms / 1000,
        peak_memory_mb=100,
    )


def _log(t: int, end_s: float | None = None) -> IterationLog:
    return IterationLog(t, 0, 2.0 / t, 0.1, 0.02, 0.03, 0.04, 0.2, end_s)


def _run(**changes: object) -> RunData:
    base = dict(
        store_url="memory://x",
        keys=Keys.for_job(CFG),
        state=JobState(config=CFG, status="finished", round=2, attempt=2),
        summary=None,
        progress=None,
        logs={},
        records=(),
        lease=None,
        prediction=None,
    )
    base.update(changes)
    return RunData(**base)  # type: ignore[arg-type]


def test_timeline_maps_records_to_workers_rounds_and_failed_attempts() -> None:
    # attempt 0 (round 0) ok; attempt 1 failed (worker 1 crashed); attempt 2 is round 1 again
    records = (
        _record(100, 110),
        _record(100.5, 110),
        _record(111, 115, "cancelled"),
        _record(111, 114, "failed"),
        _record(116, 130),
        _record(116, 130),
    )
    retry = Retry(round=1, attempt=1, worker=1, reason="killed", iterations_lost=3)
    run = _run(
        records=records, state=JobState(config=CFG, status="finished", round=2, retries=(retry,))
    )
    spans = analysis.timeline(run)
    assert [(s.worker, s.attempt, s.round, s.failed_attempt) for s in spans] == [
        (0, 0, 0, False),
        (1, 0, 0, False),
        (0, 1, 1, True),
        (1, 1, 1, True),
        (0, 2, 1, False),
        (1, 2, 1, False),
    ]
    assert spans[0].start_s == 0 and spans[1].start_s == 0.5 and spans[-1].end_s == 30
    assert spans[3].state == "failed"


def test_loss_curve_by_wall_time_only_when_every_log_has_it() -> None:
    run = _run(records=(_record(100, 120),), logs={0: [_log(1, 101.0), _log(2, 102.5)]})
    curve = analysis.loss_curve(run)
    assert curve.iterations == (1, 2) and curve.losses == (2.0, 1.0)
    assert curve.wall_s == (1.0, 2.5)
    old = analysis.loss_curve(_run(logs={0: [_log(1), _log(2)]}))
    assert old.wall_s is None and old.iterations == (1, 2)


def test_phase_breakdown_has_an_aggregator_and_a_non_aggregator() -> None:
    run = _run(logs={0: [_log(1), _log(2)], 1: [_log(1)]})
    stats = analysis.phase_breakdown(run)
    assert list(stats) == ["aggregator (worker 0)", "non-aggregator (worker 1)"]
    s = stats["aggregator (worker 0)"]
    assert s.train == pytest.approx(0.1) and s.other == pytest.approx(0.2 - 0.19)


def test_status_of_a_live_job_from_its_progress() -> None:
    now = 1000.0
    progress = Progress(
        iteration=30,
        epoch=0,
        loss=0.5,
        time=now - 1,
        round=1,
        attempt=1,
        start_iteration=20,
        loop_started=now - 6,  # 10 iterations in 5 s
        total_iterations=100,
    )
    result = WorkerResult(0, 0, 1, 20, False, 1.0, 0.5, 8.0, 2.0, 0.7, {"PUT": 1})
    state = JobState(config=CFG, status="running", round=1, attempt=1, done=20, results=(result,))
    lease = Lease("h", "elsewhere", 1, heartbeat=time.time())
    run = _run(state=state, progress=progress, lease=lease, arrived=frozenset({0}))
    s = analysis.job_status(run, PRICES, now)
    assert s.state == "running" and s.iteration == 30 and s.total_iterations == 100
    assert s.seconds_per_iteration == pytest.approx(0.5)
    assert s.time_left_s == pytest.approx(35.0)
    # one completed invocation (11.5 s) + 2 workers for 6 s, at 1 GB; 2 attempts x 2 workers
    assert s.cost_is_estimate
    assert s.cost_usd == pytest.approx(PRICES.function_cost(11.5 + 12.0, 4))
    assert [w.state for w in s.workers] == ["training (round 1)", "starting (round 1)"]
    assert [w.role for w in s.workers] == ["aggregator", "non-aggregator"]
    # its coordinator is gone: stopped, no time left to estimate
    gone = analysis.job_status(_run(state=state, progress=progress, lease=None), PRICES, now)
    assert gone.state == "stopped" and gone.time_left_s is None


def test_runs_are_newest_first_and_unknown_starts_lead() -> None:
    def row(job_id: str, started: float | None) -> analysis.RunRow:
        return analysis.RunRow(
            job_id, "mlp", "digits", "kreduce", 2, 1, 512, "finished", 1, 1, None, None, 0.0,
            started,
        )  # fmt: skip

    rows = [row("a", 10.0), row("b", 30.0), row("c", None), row("d", 20.0)]
    assert [r.job_id for r in analysis.newest_first(rows)] == ["c", "b", "d", "a"]


def _summary() -> JobSummary:
    return JobSummary(
        job_id="j",
        config=CFG.to_dict(),
        wall_time_s=30.0,
        train_time_s=1.0,
        comm_time_s=1.0,
        billed_gb_s=20.0,
        invocations=6,
        rounds=2,
        requests={"PUT": 10, "GET": 40, "LIST": 0, "DELETE": 2, "HEAD": 0},
        cost_usd={"functions": 0.001, "storage": 0.0001, "total": 0.0011},
        test_accuracy=0.9,
        final_loss=0.3,
        iterations=10,
        iterations_per_epoch=10,
        samples=640,
        outputs={"store": "memory://x", "model": "output/j/model.pt"},
    )


def test_summary_round_trips_and_ignores_later_keys() -> None:
    s = _summary()
    assert JobSummary.from_dict({**s.to_dict(), "later": 1}, "k") == s
    with pytest.raises(CorruptObject, match="wall_time_s"):
        JobSummary.from_dict({k: v for k, v in s.to_dict().items() if k != "wall_time_s"}, "k")


def test_cost_split_prices_each_request_kind() -> None:
    cost = analysis.cost_split(_run(summary=_summary()), PRICES)
    assert cost is not None
    assert cost.storage_by_kind["PUT"] == pytest.approx(10 * PRICES.request_usd("PUT"))
    assert cost.requests_per_iteration == {"PUT": 1, "GET": 4, "LIST": 0, "DELETE": 0.2, "HEAD": 0}


def test_old_iteration_logs_and_progress_still_read() -> None:
    old = {k: v for k, v in _log(3).to_dict().items() if k != "end_s"}
    assert IterationLog.from_dict(old).end_s is None
    with pytest.raises(ValueError):
        IterationLog.from_dict({**old, "surprise": 1})
    with pytest.raises(ValueError):
        IterationLog.from_dict({**old, "loss": None})
    p = Progress.from_dict({"iteration": 3, "epoch": 0, "loss": 1.5, "time": 10.0}, "k")
    assert p.total_iterations is None and p.iteration == 3
    with pytest.raises(CorruptObject, match="k"):
        Progress.from_dict({"iteration": "3", "epoch": 0, "loss": 1.5, "time": 10.0}, "k")


def test_a_prediction_is_read_back_as_the_optimizer_wrote_it() -> None:
    check = PredictionCheck(
        time_s=10.0,
        cost_usd=0.01,
        measured_time_s=12.5,
        measured_cost_usd=0.011,
        terms={"loop": Term(predicted=5.0, measured=6.0)},
    )
    d = check.to_dict()
    d["new_field"] = [1]  # a newer fasdl's
    assert PredictionCheck.from_dict(d) == check
    with pytest.raises(CorruptObject, match=r"k.*measured_cost_usd"):
        _prediction({**d, "measured_cost_usd": "x"}, "k")


def test_the_page_holds_every_figure_as_a_decodable_png() -> None:
    run = _run(
        summary=_summary(),
        records=(_record(100, 110), _record(100, 111)),
        logs={0: [_log(1, 101), _log(2, 102)], 1: [_log(1, 101)]},
        prediction=PredictionCheck(
            time_s=10.0, cost_usd=0.001, measured_time_s=12.0, measured_cost_usd=0.0011, terms={}
        ),
    )
    report = build_report(run, PRICES, now=200.0)
    assert list(report.images) == [
        "loss.png",
        "phases.png",
        "timeline.png",
        "cost.png",
        "prediction.png",
    ]
    inlined = re.findall(r'src="data:image/png;base64,([^"]+)"', report.html)
    assert len(inlined) == 5
    for data, png in zip(inlined, report.images.values(), strict=True):
        assert base64.b64decode(data) == png
        pixels = mpimg.imread(io.BytesIO(png))
        assert pixels.shape[0] > 100 and pixels.shape[1] > 500
        assert float(pixels.std()) > 0  # something is drawn
    assert "90.00 %" in report.html and json.dumps(CFG.job_id)[1:-1] in report.html
