"""What the coordinator and the workers tell each other, as frozen types.

They run in different processes (functions), so everything crosses as JSON: the coordinator
invokes each worker with a ``WorkerTask`` (the job, the worker, the round and the ``JobMeta``),
and each invocation returns a ``WorkerResult``. Raw dicts exist only at the edge: ``to_dict``
on the way out, ``from_dict`` on the way in, which validates every key.

A bad task is bad input to the handler (``InvalidInput`` naming the key, e.g.
``event.meta.total_iterations``): anyone can invoke a deployed function. A bad result or a
small barrier/progress object that does not decode is a fault of the program: ``CorruptObject``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from fasdl.errors import CorruptObject, InvalidInput
from fasdl.kreduce.config import JobConfig
from fasdl.validate import (
    finite_number,
    json_object,
    known_keys,
    required,
    whole_number,
)


@dataclass(frozen=True)
class JobMeta:
    """What the coordinator learnt from the data, which every worker needs before training."""

    total_iterations: int
    num_classes: int
    input_shape: tuple[int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_iterations": self.total_iterations,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "meta") -> JobMeta:
        m = json_object(d, where)
        known_keys(m, ("total_iterations", "num_classes", "input_shape"), where)
        shape = required(m, "input_shape", where)
        if not isinstance(shape, list | tuple) or len(shape) != 3:
            raise InvalidInput(
                f"{where}.input_shape", f"{shape!r} is not [channels, height, width]"
            )
        c, h, w = (whole_number(v, f"{where}.input_shape", minimum=1) for v in shape)
        return cls(
            total_iterations=whole_number(
                required(m, "total_iterations", where), f"{where}.total_iterations", minimum=1
            ),
            num_classes=whole_number(
                required(m, "num_classes", where), f"{where}.num_classes", minimum=1
            ),
            input_shape=(c, h, w),
        )


@dataclass(frozen=True)
class WorkerTask:
    """The event of one worker's invocation: train ``job`` as ``worker`` in round ``round``,
    attempt ``attempt`` (the keys it exchanges live under it), from iteration ``start_iteration``
    (0: from scratch; else from checkpoint set ``resume_set``)."""

    job: JobConfig
    worker: int
    round: int
    meta: JobMeta
    attempt: int = 0
    start_iteration: int = 0
    resume_set: int | None = None

    def __post_init__(self) -> None:
        if (self.start_iteration > 0) != (self.resume_set is not None):
            raise InvalidInput(
                "resume_set", "a task resumes from a checkpoint set exactly when it starts past 0"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job.to_dict(),
            "worker": self.worker,
            "round": self.round,
            "meta": self.meta.to_dict(),
            "attempt": self.attempt,
            "start_iteration": self.start_iteration,
            "resume_set": self.resume_set,
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "event") -> WorkerTask:
        e = json_object(d, where)
        known_keys(
            e, ("job", "worker", "round", "meta", "attempt", "start_iteration", "resume_set"), where
        )
        job = JobConfig.from_dict(dict(json_object(required(e, "job", where), f"{where}.job")))
        worker = whole_number(
            required(e, "worker", where),
            f"{where}.worker",
            minimum=0,
            maximum=job.num_workers - 1,
        )
        rnd = whole_number(required(e, "round", where), f"{where}.round", minimum=0)
        meta = JobMeta.from_dict(required(e, "meta", where), f"{where}.meta")
        attempt = whole_number(e.get("attempt", 0), f"{where}.attempt", minimum=0)
        start = whole_number(
            e.get("start_iteration", 0),
            f"{where}.start_iteration",
            minimum=0,
            maximum=meta.total_iterations,
        )
        resume_set = e.get("resume_set")
        if resume_set is not None:
            resume_set = whole_number(resume_set, f"{where}.resume_set", minimum=0)
        return cls(
            job=job,
            worker=worker,
            round=rnd,
            meta=meta,
            attempt=attempt,
            start_iteration=start,
            resume_set=resume_set,
        )


@dataclass(frozen=True)
class WorkerResult:
    """What one invocation of a worker did: the iterations it ran (``first_iteration`` to
    ``last_iteration``), whether training is finished, its seconds and its store requests."""

    worker: int
    round: int
    first_iteration: int
    last_iteration: int
    finished: bool
    setup_s: float
    checkpoint_s: float
    train_s: float  # summed over its iterations
    comm_s: float  # upload + aggregate + download, summed over its iterations
    final_loss: float | None  # None when it ran no iteration
    requests: Mapping[str, int]  # store requests by kind
    # When the handler started (epoch seconds) and where its setup went, in seconds: "data" (get
    # and decode the partition), "model" (model, optimizer, checkpoint), "comm" (the exchange's
    # set-up), "barrier" (arrive, then wait for the go). Empty from workers before these.
    started_at: float | None = None
    setup_phases_s: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["requests"] = dict(self.requests)
        d["setup_phases_s"] = dict(self.setup_phases_s)
        return d

    @classmethod
    def from_dict(cls, d: object, source: str = "a worker's result") -> WorkerResult:
        """Raises ``CorruptObject`` naming ``source`` and the key: a worker wrote the result."""
        try:
            r = json_object(d, "result")
            fields = set(cls.__dataclass_fields__)
            known_keys(r, fields, "result")

            def whole(k: str, minimum: int = 0) -> int:
                return whole_number(required(r, k), k, minimum=minimum)

            def seconds(k: str) -> float:
                return finite_number(required(r, k), k, minimum=0)

            finished = required(r, "finished")
            if not isinstance(finished, bool):
                raise InvalidInput("finished", f"{finished!r} is not true or false")
            loss = required(r, "final_loss")
            requests = json_object(required(r, "requests"), "requests")
            phases = json_object(r.get("setup_phases_s", {}), "setup_phases_s")
            started_at = r.get("started_at")
            return cls(
                worker=whole("worker"),
                round=whole("round"),
                first_iteration=whole("first_iteration", 1),
                last_iteration=whole("last_iteration"),
                finished=finished,
                setup_s=seconds("setup_s"),
                checkpoint_s=seconds("checkpoint_s"),
                train_s=seconds("train_s"),
                comm_s=seconds("comm_s"),
                final_loss=None if loss is None else finite_number(loss, "final_loss"),
                requests={
                    k: whole_number(v, f"requests.{k}", minimum=0) for k, v in requests.items()
                },
                started_at=None if started_at is None else finite_number(started_at, "started_at"),
                setup_phases_s={
                    k: finite_number(v, f"setup_phases_s.{k}", minimum=0) for k, v in phases.items()
                },
            )
        except InvalidInput as e:
            raise CorruptObject(source, str(e)) from e


def decode_json(blob: bytes, key: str) -> Any:
    """A JSON object read from the store at ``key``; ``CorruptObject`` if it is not one."""
    try:
        value = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptObject(key, f"not JSON: {e}") from e
    if not isinstance(value, dict):
        raise CorruptObject(key, f"a JSON {type(value).__name__}, not an object")
    return value


def json_number(obj: Mapping[str, Any], name: str, key: str) -> float:
    """The finite number ``obj[name]`` of the object read at ``key``; ``CorruptObject`` if not."""
    try:
        return finite_number(required(obj, name), name)
    except InvalidInput as e:
        raise CorruptObject(key, str(e)) from e
