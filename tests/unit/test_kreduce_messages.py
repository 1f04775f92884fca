"""What crosses the process boundary between the coordinator and the workers, and corrupt objects."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import torch

from fasdl.data import ArrayDataset, dataset_from_bytes, dataset_to_bytes
from fasdl.errors import CorruptObject, InvalidInput
from fasdl.kreduce import coordinator
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.messages import (
    JobMeta,
    WorkerResult,
    WorkerTask,
    decode_json,
    json_number,
)
from fasdl.kreduce.protocol import decode_merged, encode_merged
from fasdl.kreduce.worker import _resume
from fasdl.store.memory import MemoryStore
from fasdl.training import ModelVector, make_optimizer, save_checkpoint, seeded_model

CFG = JobConfig(store="memory://messages", job_id="msg", num_workers=3, num_aggregators=2)
META = JobMeta(total_iterations=12, num_classes=10, input_shape=(3, 8, 8))
RESULT = WorkerResult(
    worker=1,
    round=0,
    first_iteration=1,
    last_iteration=7,
    finished=False,
    setup_s=0.5,
    checkpoint_s=0.01,
    train_s=1.25,
    comm_s=0.75,
    final_loss=2.1,
    requests={"PUT": 10, "GET": 12, "LIST": 0, "DELETE": 3, "HEAD": 0},
)


def _json(x: object) -> object:
    return json.loads(json.dumps(x))


def test_round_trips_through_json() -> None:
    task = WorkerTask(job=CFG, worker=2, round=3, meta=META)
    assert WorkerTask.from_dict(_json(task.to_dict())) == task
    assert JobMeta.from_dict(_json(META.to_dict())) == META
    assert WorkerResult.from_dict(_json(RESULT.to_dict())) == RESULT
    assert (
        WorkerResult.from_dict(_json({**RESULT.to_dict(), "final_loss": None})).final_loss is None
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"worker": 3}, "event.worker"),  # W = 3: workers 0..2
        ({"worker": -1}, "event.worker"),
        ({"round": "1"}, "event.round"),
        ({"meta": {**META.to_dict(), "total_iterations": 0}}, "event.meta.total_iterations"),
        ({"meta": {**META.to_dict(), "input_shape": [3, 8]}}, "event.meta.input_shape"),
        ({"meta": {"num_classes": 10, "input_shape": [3, 8, 8]}}, "event.meta.total_iterations"),
        ({"meta": [1]}, "event.meta"),
        ({"extra": 1}, "event"),
        ({"job": {**CFG.to_dict(), "num_aggregators": 0}}, "num_aggregators"),
    ],
)
def test_a_bad_task_names_the_key(change: dict, named: str) -> None:
    d = {**WorkerTask(job=CFG, worker=0, round=0, meta=META).to_dict(), **change}
    with pytest.raises(InvalidInput) as e:
        WorkerTask.from_dict(d)
    assert e.value.field == named


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"last_iteration": 1.5}, "last_iteration"),
        ({"finished": 1}, "finished"),
        ({"train_s": float("nan")}, "train_s"),
        ({"requests": {"PUT": -1}}, "requests.PUT"),
        ({"surprise": True}, r"unknown key\(s\) surprise"),
    ],
)
def test_a_bad_result_is_a_corrupt_object_naming_the_key(change: dict, words: str) -> None:
    with pytest.raises(CorruptObject, match=words) as e:
        WorkerResult.from_dict({**RESULT.to_dict(), **change}, "the result of worker 1 in round 0")
    assert e.value.key == "the result of worker 1 in round 0"
    d = RESULT.to_dict()
    del d["comm_s"]
    with pytest.raises(CorruptObject, match="comm_s: missing"):
        WorkerResult.from_dict(d)


def test_barrier_and_progress_objects_that_do_not_decode() -> None:
    assert json_number(decode_json(b'{"deadline": 1.5}', "go"), "deadline", "go") == 1.5
    for blob in (b"{trunc", b"\xff\xfe", b"[1, 2]"):
        with pytest.raises(CorruptObject, match="'tmp/j/barrier/r0/go'"):
            decode_json(blob, "tmp/j/barrier/r0/go")
    with pytest.raises(CorruptObject, match="deadline"):
        json_number({"deadline": "soon"}, "deadline", "go")


def test_a_merged_chunk_that_is_not_one() -> None:
    blob = encode_merged(4, 0, np.ones(5, np.float32))
    assert decode_merged(blob, "m")[0] == 4
    for bad in (b"", blob[:10], blob[:-1], b"XXXX" + blob[4:]):
        with pytest.raises(CorruptObject, match="'merged/j/it0000004/c0'"):
            decode_merged(bad, "merged/j/it0000004/c0")


def test_a_dataset_blob_that_is_not_one_names_its_key() -> None:
    ds = ArrayDataset(np.zeros((4, 1, 2, 2), np.float32), np.arange(4) % 2, 2, "t")
    blob = dataset_to_bytes(ds)
    assert len(dataset_from_bytes(blob, key="partition/j/w0.npz")) == 4
    with pytest.raises(CorruptObject, match=r"'partition/j/w0\.npz'"):
        dataset_from_bytes(blob[: len(blob) // 2], key="partition/j/w0.npz")


def test_a_truncated_checkpoint_is_a_corrupt_object() -> None:
    model = seeded_model("mlp", 0, 10, (3, 8, 8))
    vec = ModelVector.attach(model)
    opt = make_optimizer(model, lr=0.1, momentum=0.9)
    blob = save_checkpoint(5, vec, opt, model)
    assert _resume(blob, "ckpt", vec, opt, model) == 5
    with pytest.raises(CorruptObject, match="'tmp/j/ckpt/w0' is corrupt: not a checkpoint"):
        _resume(blob[: len(blob) // 2], "tmp/j/ckpt/w0", vec, opt, model)
    cnn = seeded_model("cnn", 0, 10, (3, 8, 8))  # another model: another vector length
    with pytest.raises(CorruptObject):
        _resume(
            blob,
            "tmp/j/ckpt/w0",
            ModelVector.attach(cnn),
            make_optimizer(cnn, lr=0.1, momentum=0.9),
            cnn,
        )


def test_the_final_model_that_does_not_load_is_a_corrupt_object() -> None:
    cfg = JobConfig(**{**CFG.to_dict(), "dataset": "synthetic:300", "platform": "inline"})
    job = coordinator.prepare(cfg)
    buf = io.BytesIO()
    torch.save({"not": torch.zeros(1)}, buf)
    with pytest.raises(CorruptObject, match=r"'output/msg/model\.pt'"):
        coordinator.evaluate(job, buf.getvalue(), key="output/msg/model.pt")


class _FailingStore(MemoryStore):
    def delete(self, keys):  # type: ignore[override]
        raise OSError("the disk went away")


def test_a_failed_cleanup_is_logged_not_swallowed(caplog) -> None:
    store = _FailingStore("cleanup-test")
    keys = Keys.for_job(CFG)
    store.put(keys.checkpoint(0, 0), b"x")
    with caplog.at_level(logging.WARNING, logger="fasdl.kreduce.coordinator"):
        coordinator._delete_prefixes(store, keys.scratch_prefixes())  # does not raise
    assert any("could not delete" in r.getMessage() and r.exc_info for r in caplog.records)
    MemoryStore.discard("cleanup-test")


def test_integer_buffers_survive_a_checkpoint() -> None:
    """BatchNorm's num_batches_tracked is not in the float vector: the checkpoint carries it."""

    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))

    model = net()
    vec = ModelVector.attach(model)
    opt = make_optimizer(model, lr=0.1, momentum=0.9)
    for _ in range(3):
        model.train()
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
    blob = save_checkpoint(3, vec, opt, model)
    fresh = net()
    fresh_vec = ModelVector.attach(fresh)
    assert int(fresh[1].num_batches_tracked) == 0
    _resume(blob, "ckpt", fresh_vec, make_optimizer(fresh, lr=0.1, momentum=0.9), fresh)
    assert int(fresh[1].num_batches_tracked) == 3
    assert torch.equal(fresh_vec.flat, vec.flat)
