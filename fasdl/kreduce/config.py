"""The job: a frozen, validated description of one K-Reduce training run.

It is built from CLI flags, from a JSON file of the same fields, from the seed's trigger payload
(``from_payload``) or from the optimizer's plan; raw dicts stop here.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fasdl.errors import InvalidInput, OverlappingPrefixes
from fasdl.perf.transfer import WIRES
from fasdl.platform.limits import check_memory_mb, check_timeout_s
from fasdl.validate import finite_number, positive_number, whole_number

PATTERNS = ("kreduce", "scatter_reduce", "allreduce")
ARCHES = ("x86", "arm64")  # as the price table names them
SYNCHRONOUS_PATTERNS = ("scatter_reduce", "allreduce")  # every worker waits for merged(t)
MERGES = ("mean", "batch")  # the average: equal weights (the seed's), or weighted by batch size
# What the original FasDL trains with: an equal-weight average and SGD without momentum. A seed
# payload (one that uses the seed's own field names) gets these unless it says otherwise.
SEED_SEMANTICS = {"merge": "mean", "momentum": 0.0}

# The seed's trigger payload field -> our field.
SEED_FIELDS = {
    "train_net": "model",
    "pattern_k": "num_aggregators",
    "num_workers": "num_workers",
    "batch_size_wor": "batch_size_wor",
    "batch_size_agg": "batch_size_agg",
    "epochs": "epochs",
    "l_r": "lr",
    "memory": "memory_mb",
    "func_time": "func_time_s",
    "seed": "seed",
    "tmp_bucket": "tmp_prefix",
    "merged_bucket": "merged_prefix",
    "partition_bucket": "partition_prefix",
    "data_bucket": "data_prefix",
    "output_bucket": "output_prefix",
}
_INT_FIELDS = {
    "max_iterations_per_invocation",
    "retries",
    "num_aggregators",
    "num_workers",
    "batch_size_wor",
    "batch_size_agg",
    "epochs",
    "memory_mb",
    "seed",
}
_FLOAT_FIELDS = {"lr", "func_time_s", "momentum", "weight_decay", "comm_timeout_s"}
_TEXT_FIELDS = (
    "model",
    "dataset",
    "pattern",
    "merge",
    "arch",
    "wire",
    "store",
    "platform",
    "job_id",
    "data_prefix",
    "partition_prefix",
    "tmp_prefix",
    "merged_prefix",
    "output_prefix",
)
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The store prefixes of a job, in the order an overlap is reported (the later field is named).
# The data is read-only input; partition, tmp and merged are scratch, deleted when the job ends.
PREFIX_FIELDS = ("data_prefix", "partition_prefix", "tmp_prefix", "merged_prefix", "output_prefix")


def new_job_id() -> str:
    return "job-" + secrets.token_hex(4)


@dataclass(frozen=True, kw_only=True)
class JobConfig:
    model: str = "cnn"
    dataset: str = "synthetic"
    num_workers: int = 4
    num_aggregators: int = 2
    batch_size_agg: int = 32
    batch_size_wor: int = 32
    epochs: int = 1
    lr: float = 0.05
    momentum: float = 0.9
    # "mean", by evidence: lower test loss than "batch" in 20 of 24 seed-paired runs
    # (benchmarks/patterns.py, docs/kreduce.md); they only differ when K < W with unequal batches.
    merge: str = "mean"
    weight_decay: float = 0.0
    memory_mb: int = 1769
    func_time_s: float = 900.0
    seed: int = 0
    pattern: str = "kreduce"
    store: str = field(default_factory=lambda: (Path.cwd() / "fasdl-runs").as_uri())
    platform: str = "local"
    job_id: str = field(default_factory=new_job_id)
    data_prefix: str = "data"
    partition_prefix: str = "partition"
    tmp_prefix: str = "tmp"
    merged_prefix: str = "merged"
    output_prefix: str = "output"
    # How long a worker waits for a peer; None: derived from the model, memory and the measured
    # iterations (``fasdl.kreduce.timeouts``).
    comm_timeout_s: float | None = None
    arch: str = "x86"  # the functions' architecture, for their GB-second price (x86 or arm64)
    retries: int = 3  # failed rounds retried per job, each from the last checkpoint set
    max_iterations_per_invocation: int = 0  # 0: as many as func_time_s allows
    # How the model travels through the store: fp32 (exact), fp16, bf16 or int8 with error
    # feedback (``fasdl.training.wire``; docs/kreduce.md, "Wire formats").
    wire: str = "fp32"

    def __post_init__(self) -> None:
        self.validate()

    # -- validation (everything that can be checked without the data) ---------------------------
    def validate(self) -> None:
        for name in _TEXT_FIELDS:
            v = getattr(self, name)
            if not isinstance(v, str):
                raise InvalidInput(name, f"{v!r} is not a string")
        whole_number(self.seed, "seed", minimum=0, fix="use a seed ≥ 0")
        if self.pattern not in PATTERNS:
            raise InvalidInput(
                "pattern", f"unknown pattern {self.pattern!r}", f"known: {', '.join(PATTERNS)}"
            )
        if self.arch not in ARCHES:
            raise InvalidInput(
                "arch", f"unknown architecture {self.arch!r}", f"known: {', '.join(ARCHES)}"
            )
        if self.merge not in MERGES:
            raise InvalidInput(
                "merge", f"unknown merge {self.merge!r}", f"known: {', '.join(MERGES)}"
            )
        if self.wire not in WIRES:
            raise InvalidInput(
                "wire", f"unknown wire format {self.wire!r}", f"known: {', '.join(WIRES)}"
            )
        whole_number(self.num_workers, "num_workers", minimum=1, fix="use at least one worker")
        whole_number(
            self.num_aggregators, "num_aggregators", minimum=1, fix="use at least one aggregator"
        )
        if self.num_aggregators > self.num_workers:
            raise InvalidInput(
                "num_aggregators",
                f"K = {self.num_aggregators} aggregators is more than W = {self.num_workers} workers",
                "K must be between 1 and the number of workers",
            )
        for name in ("batch_size_agg", "batch_size_wor"):
            whole_number(
                getattr(self, name), name, minimum=1, fix="a batch holds at least one sample"
            )
        whole_number(self.epochs, "epochs", minimum=1, fix="train for at least one epoch")
        positive_number(self.lr, "lr", fix="the learning rate must be > 0")
        finite_number(self.momentum, "momentum", minimum=0)
        finite_number(self.weight_decay, "weight_decay", minimum=0)
        whole_number(self.memory_mb, "memory_mb", unit="MB")
        check_memory_mb(self.memory_mb, "memory_mb")
        check_timeout_s(self.func_time_s, "func_time_s")
        if not _JOB_ID.match(self.job_id):
            raise InvalidInput(
                "job_id",
                f"{self.job_id!r} is not a valid job id",
                "letters, digits, '.', '_' and '-', up to 64",
            )
        for name in PREFIX_FIELDS:
            v = getattr(self, name)
            if not _segments(v) or v.startswith("/") or ".." in v.split("/"):
                raise InvalidInput(name, f"{v!r} is not a relative prefix")
        _check_prefixes_apart(self)
        why = "0 lets the function time limit decide; a stop is agreed one iteration ahead, so an invocation runs at least 2"
        n = whole_number(
            self.max_iterations_per_invocation, "max_iterations_per_invocation", minimum=0, fix=why
        )
        if n == 1:
            raise InvalidInput("max_iterations_per_invocation", "1 is not 0 or ≥ 2", why)
        if self.comm_timeout_s is not None:
            positive_number(
                self.comm_timeout_s, "comm_timeout_s", unit="s", fix="or leave it out to derive it"
            )
        whole_number(self.retries, "retries", minimum=0, fix="0 stops the job at the first failure")
        from fasdl.models import check_model_name

        check_model_name(self.model)

    # -- derived --------------------------------------------------------------------------------
    def resolved(self) -> JobConfig:
        """Apply the pattern: ScatterReduce is K = W, AllReduce K = 1, both with equal batches
        (A = B) and synchronous (``synchronous``)."""
        if self.pattern == "scatter_reduce":
            return dataclasses.replace(
                self, num_aggregators=self.num_workers, batch_size_wor=self.batch_size_agg
            )
        if self.pattern == "allreduce":
            return dataclasses.replace(self, num_aggregators=1, batch_size_wor=self.batch_size_agg)
        return self

    @property
    def synchronous(self) -> bool:
        """Every worker continues from merged(t) (the baselines); K-Reduce's non-aggregators
        continue from merged(t-1) and never wait for the aggregation."""
        return self.pattern in SYNCHRONOUS_PATTERNS

    @property
    def batch_sizes(self) -> list[int]:
        k = self.num_aggregators
        return [self.batch_size_agg] * k + [self.batch_size_wor] * (self.num_workers - k)

    @property
    def global_batch(self) -> int:
        return sum(self.batch_sizes)

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInput(
                "job",
                f"unknown field(s) {', '.join(unknown)}",
                f"known: {', '.join(sorted(known))}",
            )
        return cls(**{k: _coerce(k, v) for k, v in d.items()})

    @classmethod
    def from_payload(
        cls,
        payload: dict[str, Any],
        *,
        seed_semantics: bool = False,
        extra_keys: Collection[str] = (),
        **overrides: Any,
    ) -> JobConfig:
        """The seed's trigger payload (its field names, values often strings) plus overrides.

        With ``seed_semantics`` (a payload written for the original FasDL: ``is_seed_payload``),
        the merge and momentum default to the seed's (``SEED_SEMANTICS``) unless given.
        A key that is neither a field nor the seed's is refused (``check_payload_keys``), unless
        it is one of ``extra_keys``, which are ignored (a plan's prediction, ...).
        """
        check_payload_keys(payload, extra_keys=extra_keys)
        d: dict[str, Any] = dict(SEED_SEMANTICS) if seed_semantics else {}
        for k, v in payload.items():
            if k in SEED_FIELDS:
                d[SEED_FIELDS[k]] = v
            elif k in {f.name for f in dataclasses.fields(cls)}:
                d[k] = v
        if "data_bucket" in payload and "dataset" not in payload and "dataset" not in overrides:
            d["dataset"] = "cifar10"  # the seed keeps the CIFAR-10 batch files in data_bucket
        d.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _coerce(k, v) for k, v in d.items() if k in known})


def payload_keys() -> frozenset[str]:
    """Every key a payload may hold: JobConfig's fields and the seed's names."""
    return frozenset({f.name for f in dataclasses.fields(JobConfig)} | set(SEED_FIELDS))


def check_payload_keys(payload: Mapping[str, Any], *, extra_keys: Collection[str] = ()) -> None:
    """Refuse a key that is neither a field, nor the seed's, nor one of ``extra_keys``, naming
    it and the closest known key: a typo (``"num_worker": 8``) would otherwise train with the
    default."""
    known = payload_keys()
    for key in sorted(set(payload) - known - set(extra_keys), key=str):
        close = difflib.get_close_matches(str(key), sorted(known | set(extra_keys)), n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
        raise InvalidInput(str(key), "unknown key", fix)


def _segments(prefix: str) -> tuple[str, ...]:
    """A prefix as a key path: ``tmp//x/`` and ``./tmp/x`` are ``("tmp", "x")`` (a file store
    reads them as the same directory). Case-folded: a file store may ignore case."""
    return tuple(s.casefold() for s in prefix.split("/") if s not in ("", "."))


def _check_prefixes_apart(cfg: JobConfig) -> None:
    """No prefix equals another or holds another (as key paths; ``tmp`` holds ``tmp/x``, not
    ``tmpx``): equal tmp and merged prefixes break a file store (a key would be a file and a
    directory), an output prefix inside a scratch prefix is deleted by the cleanup, model
    included, and the data is read-only input."""
    for j, b in enumerate(PREFIX_FIELDS):
        for a in PREFIX_FIELDS[:j]:
            va, vb = getattr(cfg, a), getattr(cfg, b)
            sa, sb = _segments(va), _segments(vb)
            n = min(len(sa), len(sb))
            if sa[:n] != sb[:n]:
                continue
            na, nb = a.removesuffix("_prefix"), b.removesuffix("_prefix")
            if len(sa) == len(sb):
                problem = f"the {na} prefix {va!r} and the {nb} prefix {vb!r} are the same"
            elif len(sa) < len(sb):
                problem = f"the {na} prefix {va!r} holds the {nb} prefix {vb!r}"
            else:
                problem = f"the {nb} prefix {vb!r} holds the {na} prefix {va!r}"
            if a == "data_prefix":
                fix = "the data is read-only input: keep it apart from the prefixes a job writes"
            elif b == "output_prefix":
                fix = (
                    "the job deletes its tmp, merged and partition prefixes when it ends: give "
                    "the outputs (the model) a prefix of their own"
                )
            else:
                fix = "give each prefix its own path, none inside another"
            raise OverlappingPrefixes(b, a, problem, fix)


def is_seed_payload(d: dict[str, Any]) -> bool:
    """Whether a payload is written in the original FasDL's field names (``train_net``, ``l_r``,
    ``pattern_k``, ...), that is, for the seed's semantics."""
    return any(k in SEED_FIELDS and SEED_FIELDS[k] != k for k in d)


def _coerce(name: str, value: Any) -> Any:
    """The seed's payload carries numbers as strings ("pattern_k": "2"); accept both."""
    try:
        if name in _INT_FIELDS and isinstance(value, str | float) and not isinstance(value, bool):
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        if name in _FLOAT_FIELDS and isinstance(value, str | int) and not isinstance(value, bool):
            return float(value)
    except (ValueError, OverflowError):  # OverflowError: int(float("inf"))
        what = "a whole number" if name in _INT_FIELDS else "a number"
        raise InvalidInput(name, f"{value!r} is not {what}") from None
    return value


def read_job_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput("payload", f"no file {str(p)!r}")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InvalidInput("payload", f"{p} is not JSON: {e}") from e
    if not isinstance(d, dict):
        raise InvalidInput("payload", f"{p} must hold a JSON object")
    return d
