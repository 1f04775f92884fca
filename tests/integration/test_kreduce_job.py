"""Whole K-Reduce jobs: numerics against the serial reference, re-invocation, every store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import final_vector, prepare, run_job
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.logs import read_worker_logs
from fasdl.kreduce.reference import reference_run
from fasdl.kreduce.worker import MIN_ITERATION_ENV
from fasdl.platform import open_platform
from fasdl.store import open_store
from fasdl.training import ModelVector, seeded_model

TINY = {
    "model": "mlp",
    "dataset": "synthetic:600",
    "num_workers": 4,
    "batch_size_agg": 16,
    "batch_size_wor": 8,
    "epochs": 2,
    "lr": 0.05,
    "memory_mb": 512,
    "func_time_s": 900,
    "comm_timeout_s": 60,
}


@pytest.mark.parametrize("k", [1, 2, 4], ids=["K=1", "K=2", "K=W"])
def test_matches_serial_reference(k: int) -> None:
    cfg = JobConfig(
        **TINY,
        num_aggregators=k,
        store=f"memory://kreduce-ref-{k}",
        platform="inline",
        job_id=f"ref{k}",
    )
    with open_platform("inline") as platform:
        summary = run_job(cfg, platform=platform)
    job = prepare(cfg)
    assert summary.iterations == job.total_iterations > 3
    expected = reference_run(cfg, job.partitions, job.meta(), job.total_iterations)
    got = final_vector(cfg)
    assert np.max(np.abs(got - expected)) <= 1e-6
    # and the model actually moved away from its initial weights
    init = ModelVector.attach(
        seeded_model(cfg.model, cfg.seed, job.meta().num_classes, job.meta().input_shape)
    ).numpy()
    assert np.max(np.abs(got - init)) > 1e-3


@pytest.mark.parametrize(
    ("pattern", "merge", "momentum"),
    [("allreduce", "batch", 0.9), ("scatter_reduce", "batch", 0.9), ("kreduce", "mean", 0.0)],
)
def test_baselines_and_merges_match_the_serial_reference(
    pattern: str, merge: str, momentum: float
) -> None:
    """AllReduce and ScatterReduce wait for merged(t); "mean" averages with equal weights."""
    cfg = JobConfig(
        **{**TINY, "momentum": momentum},
        num_aggregators=2,
        pattern=pattern,
        merge=merge,
        store=f"memory://ref-{pattern}-{merge}",
        platform="inline",
        job_id="ref",
    )
    with open_platform("inline") as platform:
        run_job(cfg, platform=platform)
    job = prepare(cfg)
    expected = reference_run(cfg, job.partitions, job.meta(), job.total_iterations)
    assert np.max(np.abs(final_vector(cfg) - expected)) <= 1e-6


def test_allreduce_waits_for_the_merged_model_of_the_current_iteration() -> None:
    """LambdaML's AllReduce is not K-Reduce with K = 1: its non-aggregators do not run stale."""
    base = {**TINY, "num_aggregators": 1, "batch_size_wor": TINY["batch_size_agg"]}
    inline = {"platform": "inline", "store": "memory://sync"}
    sync = JobConfig(**base, **inline, pattern="allreduce", job_id="sync")
    free = JobConfig(**base, **inline, pattern="kreduce", job_id="free")
    assert sync.resolved().batch_sizes == free.resolved().batch_sizes
    job = prepare(sync)
    a = reference_run(sync, job.partitions, job.meta(), 6)
    b = reference_run(free, job.partitions, job.meta(), 6)
    assert np.max(np.abs(a - b)) > 1e-4
    # and the resolved baseline trains with equal batches (A = B)
    resolved = JobConfig(**TINY, **inline, pattern="allreduce").resolved()
    assert set(resolved.batch_sizes) == {TINY["batch_size_agg"]}


def test_the_merge_rule_matters() -> None:
    cfg = JobConfig(
        **TINY,
        num_aggregators=2,
        merge="batch",
        store="memory://merge",
        platform="inline",
        job_id="merge",
    )
    job = prepare(cfg)
    mean = JobConfig(**{**cfg.to_dict(), "merge": "mean"})
    a = reference_run(cfg, job.partitions, job.meta(), 6)
    b = reference_run(mean, job.partitions, job.meta(), 6)
    assert np.max(np.abs(a - b)) > 1e-4


def test_staleness_rule_matters() -> None:
    """The reference is sensitive to the rule: non-aggregators that skipped staleness differ."""
    cfg = JobConfig(
        **TINY, num_aggregators=2, store="memory://stale", platform="inline", job_id="stale"
    )
    job = prepare(cfg)
    a = reference_run(cfg, job.partitions, job.meta(), 6)
    b = reference_run(cfg, job.partitions, job.meta(), 5)
    assert np.max(np.abs(a - b)) > 1e-4


def test_job_cleans_up_and_keeps_outputs(tmp_path) -> None:
    cfg = JobConfig(
        **TINY, num_aggregators=2, store=tmp_path.as_uri(), platform="inline", job_id="clean"
    )
    with open_platform("inline") as platform:
        summary = run_job(cfg, platform=platform)
    store = open_store(cfg.store)
    keys = store.list()
    assert all(k.startswith("output/clean/") for k in keys), keys
    assert "output/clean/model.pt" in keys and "output/clean/summary.json" in keys
    logs = [k for k in keys if "/logs/" in k]
    assert len(logs) == cfg.num_workers
    first = json.loads(store.get(logs[0]).decode().splitlines()[0])
    assert {"train_s", "upload_s", "aggregate_s", "download_s"} <= set(first)
    by_worker = read_worker_logs(store, Keys.for_job(cfg))  # what the workers wrote, read back
    assert sorted(by_worker) == list(range(cfg.num_workers))
    for rows in by_worker.values():
        assert [r.iteration for r in rows] == list(range(1, summary.iterations + 1))
    invocations = json.loads(store.get("output/clean/invocations.json"))
    assert len(invocations) == cfg.num_workers == summary.invocations
    assert summary.requests["PUT"] > 0 and summary.cost_usd["total"] > 0


def test_two_jobs_in_one_store_do_not_touch_each_other(tmp_path) -> None:
    other = open_store(tmp_path.as_uri())
    other.put("tmp/job-b/it0000001/c0/w1", b"not yours")
    other.put("merged/job-b/x", b"not yours either")
    cfg = JobConfig(
        **TINY, num_aggregators=1, store=tmp_path.as_uri(), platform="inline", job_id="job-a"
    )
    with open_platform("inline") as platform:
        run_job(cfg, platform=platform)
    assert other.get("tmp/job-b/it0000001/c0/w1") == b"not yours"
    assert other.get("merged/job-b/x") == b"not yours either"


@pytest.mark.parametrize("k", [1, 2, 4], ids=["K=1", "K=2", "K=W"])
def test_checkpoint_and_resume_gives_exactly_the_same_weights(k: int) -> None:
    base = {**TINY, "num_aggregators": k, "platform": "inline"}
    straight = JobConfig(**base, store=f"memory://straight-{k}", job_id="straight")
    resumed = JobConfig(
        **base, max_iterations_per_invocation=5, store=f"memory://resumed-{k}", job_id="resumed"
    )
    with open_platform("inline") as platform:
        s_straight = run_job(straight, platform=platform)
    with open_platform("inline") as platform:
        s_resumed = run_job(resumed, platform=platform)
    assert s_straight.rounds == 1
    assert s_resumed.rounds == -(-s_resumed.iterations // 5) >= 3
    assert s_resumed.invocations == s_resumed.rounds * resumed.num_workers
    np.testing.assert_array_equal(final_vector(resumed), final_vector(straight))


@pytest.mark.slow
def test_func_time_forces_reinvocations_with_the_same_weights(tmp_path, monkeypatch) -> None:
    """Local functions of 20 s: the job stops where aggregator 0 says, checkpoints, goes on.

    Every iteration of the short run is made to last at least 1.5 × 20 s / iterations (a worker
    test hook), so its work cannot fit in one invocation however fast the machine is.
    """
    func_time = 20.0
    base = {
        **TINY,
        "model": "cnn",
        "dataset": "synthetic:2000",
        "num_workers": 2,
        "num_aggregators": 1,
        "batch_size_agg": 16,
        "batch_size_wor": 16,
        "epochs": 4,
        "memory_mb": 884,
        "platform": "local",
    }
    long_run = JobConfig(**base, store=(tmp_path / "a").as_uri(), job_id="long")
    short_run = JobConfig(
        **{**base, "func_time_s": func_time}, store=(tmp_path / "b").as_uri(), job_id="short"
    )
    s_long = run_job(long_run)
    monkeypatch.setenv(MIN_ITERATION_ENV, str(1.5 * func_time / s_long.iterations))
    s_short = run_job(short_run)
    assert s_long.rounds == 1
    assert s_short.rounds >= 2, "the 20 s functions should have been re-invoked"
    records = json.loads(open_store(short_run.store).get("output/short/invocations.json"))
    assert all(r["state"] == "succeeded" and r["duration_ms"] < func_time * 1000 for r in records)
    assert s_short.iterations == s_long.iterations
    np.testing.assert_array_equal(final_vector(short_run), final_vector(long_run))


@pytest.mark.slow
def test_whole_job_on_local_platform_and_file_store(tmp_path) -> None:
    cfg = JobConfig(
        **TINY, num_aggregators=2, store=tmp_path.as_uri(), platform="local", job_id="local"
    )
    summary = run_job(cfg)
    assert summary.invocations == 4 and summary.test_accuracy is not None
    assert summary.billed_gb_s > 0


@pytest.mark.slow
@pytest.mark.s3
def test_whole_job_on_seaweedfs(seaweed) -> None:
    bucket = "kreduce-job"
    seaweed.make_bucket(bucket)
    cfg = JobConfig(
        **TINY,
        num_aggregators=2,
        store=seaweed.url(bucket, "runs"),
        platform="local",
        job_id="s3job",
    )
    summary = run_job(cfg)
    assert summary.iterations > 0 and summary.test_accuracy is not None
    store = open_store(cfg.store)
    assert all(k.startswith("output/s3job/") for k in store.list())
    # no LIST inside the training loop: the workers' requests hold none
    assert summary.requests["LIST"] <= 6
