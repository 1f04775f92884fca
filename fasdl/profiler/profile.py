"""The profiling stage: one function per (memory, batch size) pair, one at a time, each row on
disk as soon as it is measured.

``run_profile(ProfileConfig(...), "profile.csv")`` checks everything first (model, memory sizes,
batch sizes, store, dataset, output file), puts a sample of real training data in the store,
then invokes the ``profile`` handler (``handler.py``) once per pair, because the function's
memory setting (and with it its CPU share) is what is measured. Pairs run one at a time so that
each has the machine's cores to itself and its timings stay faithful. A pair that runs out of
memory is recorded as ``out_of_memory``, one that fails as ``failed`` (with its error), and the
run goes on. ``format_table`` prints the result as a memory x batch-size table.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fasdl.errors import InvalidInput
from fasdl.platform.base import PLATFORMS, Invocation, Platform, State, open_platform, round_up_mb
from fasdl.platform.limits import check_memory_mb, check_timeout_s
from fasdl.profiler.handler import HANDLER
from fasdl.profiler.records import PROFILE_COLUMNS, ProfileSample, append_sample, read_profile
from fasdl.profiler.task import DEFAULT_SAMPLE_S, ProfileTask
from fasdl.validate import finite_number, whole_number

DEFAULT_CHUNKS = 2  # K of a K-Reduce job's default (JobConfig.num_aggregators)
WAIT_SLACK_S = 60.0  # beyond the function's timeout, for process start and queueing
DATA_PREFIX = "profile"
_OOM_MARKERS = ("MemoryError", "can't allocate memory", "out of memory")


@dataclass(frozen=True, kw_only=True)
class ProfileConfig:
    """What to profile. Lists are kept sorted and without repeats."""

    model: str
    memory_mb: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    store: str
    platform: str = "local"
    dataset: str = "synthetic"
    iterations: int = 5  # timed samples per pair (each a block of >= sample_s, see handler.py)
    warmup: int = 2  # untimed training iterations first
    timeout_s: float = 900.0
    seed: int = 0
    chunks: int = DEFAULT_CHUNKS
    sample_s: float = DEFAULT_SAMPLE_S
    lr: float = 0.05
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if not self.memory_mb:
            raise InvalidInput("memory_mb", "no memory sizes", "e.g. --memory 512,1024,1769,3008")
        if not self.batch_sizes:
            raise InvalidInput("batch_sizes", "no batch sizes", "e.g. --batch 16,32,64,128")
        mems = tuple(sorted({check_memory_mb(m) for m in self.memory_mb}))
        batches = {
            whole_number(b, "batch_sizes", minimum=1, fix="e.g. --batch 16,32,64")
            for b in self.batch_sizes
        }
        object.__setattr__(self, "memory_mb", mems)
        object.__setattr__(self, "batch_sizes", tuple(sorted(batches)))
        whole_number(self.iterations, "iterations", minimum=1)
        whole_number(self.warmup, "warmup", minimum=0)
        whole_number(self.chunks, "chunks", minimum=1)
        whole_number(self.seed, "seed", minimum=0)
        check_timeout_s(self.timeout_s)
        sample_s = finite_number(self.sample_s, "sample_s", maximum=60, unit="s", fix="e.g. 0.5")
        if not sample_s > 0:
            raise InvalidInput("sample_s", f"{sample_s:g} s is not > 0", "e.g. 0.5")
        if self.platform not in PLATFORMS:
            raise InvalidInput(
                "platform", f"unknown platform {self.platform!r}", f"known: {', '.join(PLATFORMS)}"
            )

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """(memory, batch size) in the order they run: memory, then batch size, ascending."""
        return [(m, b) for m in self.memory_mb for b in self.batch_sizes]


@dataclass(frozen=True)
class ModelInfo:
    """The model as the driver built it: what every row of the profile repeats."""

    name: str
    num_params: int
    numel: int  # floats in the vector K-Reduce sends (parameters and floating buffers)
    input_shape: tuple[int, int, int]
    num_classes: int
    eval_s_per_sample: float | None = None  # the final evaluation here, where `fasdl train` runs
    eval_fixed_s: float | None = None  # its model build, weight load and cold first pass
    data_upload_s: float | None = None  # the training set encoded and put, as the coordinator does

    @property
    def model_size_mb(self) -> float:
        return self.numel * 4 / 1e6


@dataclass(frozen=True)
class PairResult:
    """One pair's row, the platform's state, its error if any, and the handler's details."""

    sample: ProfileSample
    state: str
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    invocation: dict[str, Any] = field(default_factory=dict)  # InvocationRecord.to_dict()
    resumed: bool = False  # read from an earlier run's file, not measured now

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.sample),
            "state": self.state,
            "error": self.error,
            "resumed": self.resumed,
            "details": self.details,
            "invocation": self.invocation,
        }


@dataclass(frozen=True)
class ProfileReport:
    config: ProfileConfig
    out: str
    model: ModelInfo
    results: tuple[PairResult, ...]
    wall_s: float

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.sample.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "config": asdict(self.config),
            "model": {**asdict(self.model), "model_size_mb": self.model.model_size_mb},
            "wall_s": self.wall_s,
            "counts": {s: self.count(s) for s in ("ok", "out_of_memory", "failed")},
            "results": [r.to_dict() for r in self.results],
        }


def check_config(cfg: ProfileConfig) -> None:
    """Everything that can be checked without running anything: model, store, dataset."""
    from fasdl.data import check_dataset_spec
    from fasdl.models import check_model_name
    from fasdl.store import open_store

    check_model_name(cfg.model)
    store = open_store(cfg.store)
    if cfg.store.startswith("memory://") and cfg.platform != "inline":
        raise InvalidInput(
            "store",
            f"a memory:// store lives inside one process; {cfg.platform} functions are separate processes",
            "use file:///PATH (or s3://BUCKET/PREFIX)",
        )
    check_dataset_spec(cfg.dataset, store=store)


def check_out(out: str | Path, *, resume: bool, model: str) -> set[tuple[int, int]]:
    """Check the output file; with ``resume``, the pairs it already holds (to be skipped)."""
    path = Path(out)
    if not path.resolve().parent.is_dir():
        raise InvalidInput(
            "out", f"the directory of {str(path)!r} does not exist", "create it first"
        )
    if path.is_dir():
        raise InvalidInput(
            "out", f"{str(path)!r} is a directory", "give a file name, e.g. profile.csv"
        )
    if not path.exists() or path.stat().st_size == 0:
        return set()
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if lines[0].strip() != ",".join(PROFILE_COLUMNS):
        raise InvalidInput(
            "out", f"{path} exists and is not a fasdl profile CSV", "choose another --out"
        )
    if not resume:
        raise InvalidInput(
            "out",
            f"{path} already exists",
            "give --resume to measure only the pairs it lacks, or choose another --out",
        )
    if len(lines) == 1:
        return set()
    profile = read_profile(path)
    if profile.model and profile.model != model:
        raise InvalidInput(
            "out", f"{path} profiles {profile.model!r}, not {model!r}", "choose another --out"
        )
    return {(s.memory_mb, s.batch_size) for s in profile.samples}


def model_info(
    cfg: ProfileConfig,
    input_shape: tuple[int, int, int],
    num_classes: int,
    probe: Any,
    test: Any = None,
) -> ModelInfo:
    """Build the model here once: its size for every row, and a forward pass on real samples so
    that a model that does not fit the data fails now rather than in every function. With
    ``test`` (the job's test set), also time the final evaluation as the coordinator runs it."""
    import torch

    from fasdl.models import count_parameters
    from fasdl.training import ModelVector, seeded_model

    model = seeded_model(cfg.model, cfg.seed, num_classes, input_shape)
    try:
        model.eval()
        with torch.no_grad():
            out = model(torch.from_numpy(probe))
        if tuple(out.shape) != (probe.shape[0], num_classes):
            raise ValueError(
                f"its output has shape {tuple(out.shape)}, expected ({probe.shape[0]}, {num_classes})"
            )
        vec = ModelVector.attach(model)
    except Exception as e:
        raise InvalidInput(
            "model", f"{cfg.model} does not run on {cfg.dataset} (input {input_shape}): {e}"
        ) from e
    per_sample, fixed = evaluation_cost(cfg, model, num_classes, input_shape, test, probe)
    return ModelInfo(
        cfg.model,
        count_parameters(model),
        vec.numel,
        input_shape,
        num_classes,
        eval_s_per_sample=per_sample,
        eval_fixed_s=fixed,
    )


EVAL_REPEATS = 3
# Samples each profiling function loads (get, decode, copy) and times: a worker loads its
# partition of D/W samples before its first iteration, at a cost per sample (``load_s_per_sample``).
# As many as a partition of CIFAR-10 among 10 workers: a new process pays for the first touch of
# every page it allocates, and on this machine's VM that was 3x the decoding itself at times.
LOAD_SAMPLES = 5000
EVAL_SAMPLES = 1000  # test samples timed at most: the cost per sample is flat beyond a batch


def evaluation_cost(
    cfg: ProfileConfig,
    model: Any,
    num_classes: int,
    input_shape: tuple[int, int, int],
    test: Any,
    probe: Any,
) -> tuple[float | None, float | None]:
    """(seconds per sample, fixed seconds) of the coordinator's final evaluation, run by the same
    code (``fasdl.training.evaluate``): per sample, the best of ``EVAL_REPEATS`` warm passes;
    fixed, what a cold run (a new model built, the weights loaded from bytes, the first pass)
    takes beyond that, the best of ``EVAL_REPEATS``. On the first ``EVAL_SAMPLES`` of the test
    set when given (in the coordinator's batches), else on ``probe`` (no labels: the fixed part
    is not measured)."""
    import numpy as np

    from fasdl.training import state_dict_bytes
    from fasdl.training.allocator import steady_allocator
    from fasdl.training.evaluate import accuracy, evaluate_weights

    steady_allocator()  # the coordinator's regime
    if test is not None and len(test.y):
        x, y = np.asarray(test.x[:EVAL_SAMPLES]), np.asarray(test.y[:EVAL_SAMPLES])
    else:
        x, y = np.asarray(probe), None
    if len(x) == 0:
        return None, None
    labels = y if y is not None else np.zeros(len(x), dtype=np.int64)
    warm = math.inf
    for _ in range(EVAL_REPEATS):
        t0 = time.perf_counter()
        accuracy(model, x, labels)
        warm = min(warm, time.perf_counter() - t0)
    if y is None:
        return warm / len(x), None
    blob = state_dict_bytes(model)
    cold = math.inf
    for _ in range(EVAL_REPEATS):
        t0 = time.perf_counter()
        evaluate_weights(cfg.model, cfg.seed, num_classes, input_shape, blob, x, y)
        cold = min(cold, time.perf_counter() - t0)
    return warm / len(x), max(0.0, cold - warm)


def data_upload_seconds(store: Any, train: Any) -> float:
    """Seconds to encode the training set and put it, as the coordinator puts the workers'
    partitions before the first round: once, as the coordinator does, in a process that has not
    put it before (a second put in the same process took a third to two thirds of the first on
    the file store here: page faults and cache). The object is deleted at once."""
    from fasdl.data import dataset_to_bytes

    key = f"{DATA_PREFIX}/{secrets.token_hex(6)}/upload.npz"
    t0 = time.perf_counter()
    try:
        store.put(key, dataset_to_bytes(train))
        return time.perf_counter() - t0
    finally:
        store.delete(key)


def run_profile(
    cfg: ProfileConfig,
    out: str | Path,
    *,
    resume: bool = False,
    platform: Platform | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[PairResult], None] | None = None,
) -> ProfileReport:
    """Profile every pair of ``cfg`` not already in ``out`` (with ``resume``), appending each row.

    ``on_start(memory_mb, batch_size)`` and ``on_result(result)`` report progress. The data
    sample put in the store is deleted at the end, whatever happened.
    """
    import numpy as np

    from fasdl.data import dataset_to_bytes, load_dataset
    from fasdl.store import open_store

    started = time.monotonic()
    check_config(cfg)
    done = check_out(out, resume=resume, model=cfg.model)
    store = open_store(cfg.store)
    train, test = load_dataset(cfg.dataset, seed=cfg.seed, store=store)
    max_batch = max(cfg.batch_sizes)
    # Enough samples for varied batches and to time the data's load per sample (a worker loads
    # thousands); a dataset smaller than a batch is drawn with replacement.
    n = min(len(train), max(2 * max_batch, LOAD_SAMPLES))
    sample = train.subset(
        np.sort(np.random.default_rng(cfg.seed).choice(len(train), n, replace=False)),
        name=f"{train.name}-profile",
    )
    info = model_info(cfg, train.input_shape, train.num_classes, np.array(sample.x), test)
    info = dataclasses.replace(info, data_upload_s=data_upload_seconds(store, train))

    results: list[PairResult] = []
    if done:
        for s in read_profile(out).samples:
            results.append(PairResult(s, "resumed", resumed=True))
    data_key = f"{DATA_PREFIX}/{secrets.token_hex(6)}/data.npz"
    own_platform = platform is None
    plat = platform if platform is not None else open_platform(cfg.platform, concurrency=1)
    try:
        store.put(data_key, dataset_to_bytes(sample))
        for m, b in cfg.pairs:
            if (m, b) in done:
                continue
            if on_start is not None:
                on_start(m, b)
            result = profile_pair(plat, cfg, info, store.url, data_key, m, b)
            append_sample(out, result.sample)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        store.delete(data_key)
        if own_platform:
            plat.shutdown()
    order = {p: i for i, p in enumerate(cfg.pairs)}
    results.sort(key=lambda r: order.get((r.sample.memory_mb, r.sample.batch_size), len(order)))
    return ProfileReport(cfg, str(out), info, tuple(results), time.monotonic() - started)


def profile_pair(
    plat: Platform,
    cfg: ProfileConfig,
    info: ModelInfo,
    store_url: str,
    data_key: str,
    memory_mb: int,
    batch_size: int,
) -> PairResult:
    """Invoke one function at ``memory_mb`` and wait for it (its timeout plus a slack at most)."""
    task = ProfileTask(
        model=cfg.model,
        store=store_url,
        data_key=data_key,
        batch_size=batch_size,
        iterations=cfg.iterations,
        warmup=cfg.warmup,
        chunks=cfg.chunks,
        seed=cfg.seed,
        sample_s=cfg.sample_s,
        lr=cfg.lr,
        momentum=cfg.momentum,
    )
    inv = plat.invoke(HANDLER, task.to_dict(), memory_mb=memory_mb, timeout_s=cfg.timeout_s)
    inv.wait(cfg.timeout_s + WAIT_SLACK_S)
    return pair_result(inv, info, batch_size)


def pair_result(inv: Invocation, info: ModelInfo, batch_size: int) -> PairResult:
    """The row of a finished invocation: times if it succeeded, its status otherwise."""

    def row(
        status: str, train_s: float | None = None, trans_s: float | None = None
    ) -> ProfileSample:
        return ProfileSample(
            memory_mb=inv.memory_mb,
            batch_size=batch_size,
            train_s=train_s,
            trans_s=trans_s,
            peak_memory_mb=round_up_mb(inv.peak_memory_mb) if inv.peak_memory_mb > 0 else None,
            billed_ms=float(inv.billed_ms) if inv.billed_ms > 0 else None,
            status=status,
            model=info.name,
            model_size_mb=info.model_size_mb,
            num_params=info.num_params,
            eval_s_per_sample=info.eval_s_per_sample,
            eval_fixed_s=info.eval_fixed_s,
            data_upload_s=info.data_upload_s,
            **job,
        )

    record = inv.record().to_dict()
    job: dict[str, float | None] = {}
    if inv.state is State.SUCCEEDED:
        r = dict(inv.result_value)
        job = startup_and_spread(r, inv.billed_ms / 1000)
        sample = row("ok", _positive(r["train_s"]), _positive(r["trans_s"]))
        return PairResult(sample, inv.state.value, details=r, invocation=record)
    error = inv.error or inv.state.value
    oom = inv.state is State.OUT_OF_MEMORY or any(m in error for m in _OOM_MARKERS)
    return PairResult(
        row("out_of_memory" if oom else "failed"), inv.state.value, error, invocation=record
    )


def startup_and_spread(result: dict[str, Any], billed_s: float) -> dict[str, float | None]:
    """A profiling function's start-up (what the platform billed before and after the handler,
    plus the handler's own time to a ready model, less its data's load), the load of its data
    per sample, its single iterations' spread, and the period in which the platform hands out
    its CPU share (where the platform says)."""
    out: dict[str, float | None] = {
        "startup_s": None,
        "load_s_per_sample": None,
        "train_cv": None,
        "cpu_period_s": None,
    }
    ready, handler_s = result.get("model_ready_s"), result.get("handler_s")
    load_s, samples = result.get("data_load_s"), result.get("data_samples")
    load: float | None = None
    if isinstance(samples, int) and samples > 0 and _non_negative(load_s):
        load = float(load_s)  # type: ignore[arg-type]
        out["load_s_per_sample"] = load / samples
    if isinstance(ready, int | float) and isinstance(handler_s, int | float) and billed_s > 0:
        start = max(0.0, billed_s - float(handler_s)) + float(ready)
        out["startup_s"] = start if load is None else max(0.0, start - load)
    cv = result.get("train_cv")
    if isinstance(cv, int | float) and math.isfinite(cv) and cv >= 0:
        out["train_cv"] = float(cv)
    period = result.get("cpu_period_s")
    if isinstance(period, int | float) and math.isfinite(period) and period > 0:
        out["cpu_period_s"] = float(period)
    return out


def _non_negative(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x >= 0


def _positive(x: object) -> float:
    """A measured time; a clock that reads 0 for a very fast call is floored at 1 ns."""
    value = float(x)  # type: ignore[arg-type]
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"the function reported a time of {x!r}")
    return max(value, 1e-9)


def format_table(report: ProfileReport) -> str:
    """Training ms per iteration, memory down and batch size across; OOM / failed where so."""
    cfg = report.config
    cells = {(r.sample.memory_mb, r.sample.batch_size): r.sample for r in report.results}
    batches = sorted({b for _, b in cells} | set(cfg.batch_sizes))
    mems = sorted({m for m, _ in cells} | set(cfg.memory_mb))
    width = 10
    head = (
        f"{'memory MB':>10} |"
        + "".join(f"{'B=' + str(b):>{width}}" for b in batches)
        + f" |{'trans ms':>{width}}{'peak MB':>{width}}{'start s':>{width}}{'cv':>{width}}"
    )
    lines = [
        "train ms per iteration (median); start-up s and spread (cv) of single iterations",
        head,
        "-" * len(head),
    ]
    for m in mems:
        row = f"{m:>10} |"
        trans, peaks, starts, cvs = [], [], [], []
        for b in batches:
            s = cells.get((m, b))
            if s is None:
                text = "-"
            elif s.ok:
                assert s.train_s is not None and s.trans_s is not None
                text = f"{s.train_s * 1000:.1f}"
                trans.append(s.trans_s)
            else:
                text = "OOM" if s.status == "out_of_memory" else "failed"
            if s is not None and s.peak_memory_mb is not None:
                peaks.append(s.peak_memory_mb)
            if s is not None and s.startup_s is not None:
                starts.append(s.startup_s)
            if s is not None and s.train_cv is not None:
                cvs.append(s.train_cv)
            row += f"{text:>{width}}"
        trans_text = f"{sorted(trans)[len(trans) // 2] * 1000:.3g}" if trans else "-"
        peak_text = f"{max(peaks):.0f}" if peaks else "-"
        start_text = f"{sorted(starts)[len(starts) // 2]:.2f}" if starts else "-"
        cv_text = f"{sorted(cvs)[len(cvs) // 2]:.3f}" if cvs else "-"
        lines.append(
            row
            + f" |{trans_text:>{width}}{peak_text:>{width}}{start_text:>{width}}{cv_text:>{width}}"
        )
    return "\n".join(lines)
