"""The profiling function's task: built by the driver, validated by the function."""

from __future__ import annotations

import json

import pytest

from fasdl.errors import InvalidInput
from fasdl.profiler.handler import handler
from fasdl.profiler.task import DEFAULT_SAMPLE_S, ProfileTask

TASK = ProfileTask(
    model="cnn",
    store="memory://p",
    data_key="profile/x/data.npz",
    batch_size=8,
    iterations=3,
    warmup=1,
)


def test_round_trip_through_json_with_the_kind() -> None:
    d = json.loads(json.dumps(TASK.to_dict()))
    assert d["kind"] == "train" and d["batch_size"] == 8
    assert ProfileTask.from_dict(d) == TASK


def test_optional_keys_take_the_handlers_defaults() -> None:
    d = {k: v for k, v in TASK.to_dict().items() if k in {"model", "store", "data_key"}}
    t = ProfileTask.from_dict({**d, "batch_size": 4, "iterations": 2, "warmup": 0})
    assert (t.chunks, t.seed, t.sample_s, t.lr, t.momentum) == (1, 0, DEFAULT_SAMPLE_S, 0.05, 0.9)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"batch_size": 0}, "event.batch_size"),
        ({"batch_size": "8"}, "event.batch_size"),
        ({"iterations": 1.5}, "event.iterations"),
        ({"sample_s": 0}, "event.sample_s"),
        ({"model": ""}, "event.model"),
        ({"kind": "transfer?"}, "event.kind"),
        ({"batchsize": 8}, "event"),  # a typo is refused, not ignored
    ],
)
def test_a_bad_event_names_the_key(change: dict, named: str) -> None:
    with pytest.raises(InvalidInput) as e:
        ProfileTask.from_dict({**TASK.to_dict(), **change})
    assert e.value.shown_as == named


def test_a_missing_key_is_named() -> None:
    d = TASK.to_dict()
    del d["data_key"]
    with pytest.raises(InvalidInput, match=r"event\.data_key: missing"):
        ProfileTask.from_dict(d)


def test_the_handler_refuses_an_unknown_kind() -> None:
    with pytest.raises(InvalidInput, match="unknown profiling kind 'fly'"):
        handler({"kind": "fly"}, None)
    with pytest.raises(InvalidInput, match="not a JSON object"):
        handler([1], None)  # type: ignore[arg-type]
