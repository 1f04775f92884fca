"""Wire formats (``fasdl.training.wire``): round trips, error bounds, error feedback, bad blobs."""

from __future__ import annotations

import numpy as np
import pytest

from fasdl.errors import CorruptObject, WireRangeError
from fasdl.kreduce.protocol import decode_merged, encode_merged
from fasdl.training.wire import (
    INT8_BLOCK,
    WIRES,
    ErrorFeedback,
    decode,
    encode,
    wire_nbytes,
)


def _values(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # magnitudes from 1e-4 to 10, as in a model (weights, biases, BatchNorm statistics)
    return (rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 1, n)).astype(np.float32)


@pytest.mark.parametrize("wire", WIRES)
def test_decode_gives_what_encode_says_the_receiver_gets(wire: str) -> None:
    x = _values()
    blob, decoded = encode(x, wire)
    assert len(blob) == wire_nbytes(x.size, wire)
    back = decode(blob, wire, key="k")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, decoded)
    # and decoded values are a fixed point: encoding them again changes nothing (a republished
    # merged chunk is exactly the weights its aggregator holds)
    np.testing.assert_array_equal(encode(decoded, wire)[1], decoded)


def test_fp32_is_exact_and_a_view() -> None:
    x = _values()
    blob, decoded = encode(x, "fp32")
    assert decoded is x
    np.testing.assert_array_equal(decode(blob, "fp32").view(np.uint32), x.view(np.uint32))


def test_fp16_is_exact_on_its_values_and_rounds_to_nearest_otherwise() -> None:
    # every finite half-precision value survives bit for bit
    halves = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    halves = halves[np.isfinite(halves)].astype(np.float32)
    np.testing.assert_array_equal(decode(encode(halves, "fp16")[0], "fp16"), halves)
    x = _values()
    got = decode(encode(x, "fp16")[0], "fp16")
    normal = np.abs(x) >= 2.0**-14
    # relative error at most half a unit in the last of 11 bits; absolute 2^-25 below normals
    assert np.all(np.abs(got - x)[normal] <= np.abs(x)[normal] * 2.0**-11)
    assert np.all(np.abs(got - x)[~normal] <= 2.0**-25)
    # ties go to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10
    tie = np.array([1 + 2**-11, 1 + 3 * 2**-11], np.float32)
    np.testing.assert_array_equal(encode(tie, "fp16")[1], [1.0, 1 + 2 * 2**-10])


def test_fp16_refuses_a_value_beyond_its_range() -> None:
    with pytest.raises(WireRangeError, match="bf16"):
        encode(np.array([1.0, 70000.0], np.float32), "fp16")


def test_bf16_is_the_top_half_rounded_to_nearest_even() -> None:
    x = _values()
    got = decode(encode(x, "bf16")[0], "bf16")
    assert np.all(got.view(np.uint32) & 0xFFFF == 0)
    assert np.all(np.abs(got - x) <= np.abs(x) * 2.0**-8)
    # exact on values with 8 significant bits; ties to even; the range of fp32
    exact = np.array([1.5, -0.15625, 1.5 * 2.0**127, 2.0**-130], np.float32)
    np.testing.assert_array_equal(encode(exact, "bf16")[1], exact)
    tie = np.array([1 + 2**-8, 1 + 3 * 2**-8], np.float32)
    np.testing.assert_array_equal(encode(tie, "bf16")[1], [1.0, 1 + 2 * 2**-7])
    special = encode(np.array([np.inf, -np.inf, np.nan], np.float32), "bf16")[1]
    assert special[0] == np.inf and special[1] == -np.inf and np.isnan(special[2])


def test_int8_error_is_at_most_half_a_scale_per_block() -> None:
    x = _values(10 * INT8_BLOCK + 17)
    blob, got = encode(x, "int8")
    blocks = -(-x.size // INT8_BLOCK)
    assert len(blob) == 16 + 4 * blocks + x.size
    scales = np.frombuffer(blob, np.float32, count=blocks, offset=16)
    absmax = np.array([np.abs(x[i : i + INT8_BLOCK]).max() for i in range(0, x.size, INT8_BLOCK)])
    # the power of two in [absmax/127, 2 absmax/127)
    assert np.all(scales >= absmax / 127) and np.all(scales < 2 * absmax / 127)
    assert np.all(np.log2(scales) == np.round(np.log2(scales)))
    per_value = np.repeat(scales, INT8_BLOCK)[: x.size]
    assert np.all(np.abs(got - x) <= per_value / 2)
    assert np.abs(got - x).max() > 0  # and it is lossy
    # a block of zeros stays zeros; infinities are refused
    np.testing.assert_array_equal(encode(np.zeros(5, np.float32), "int8")[1], np.zeros(5))
    with pytest.raises(WireRangeError):
        encode(np.array([1.0, np.inf], np.float32), "int8")


def test_error_feedback_keeps_the_running_sum_within_one_residual() -> None:
    """Sent 200 times, the sum of the decoded values tracks the sum of the true ones within half
    a scale per value; without the residual the error grows with every send."""
    rng = np.random.default_rng(1)
    base = _values(2 * INT8_BLOCK)
    fb = ErrorFeedback("int8")
    true_sum = np.zeros_like(base, dtype=np.float64)
    sent_sum = np.zeros_like(true_sum)
    plain_sum = np.zeros_like(true_sum)
    bound = np.zeros_like(true_sum)
    for _ in range(200):
        x = (base + 0.01 * rng.standard_normal(base.size)).astype(np.float32)
        _, decoded = fb.encode("piece", x)
        true_sum += x
        sent_sum += decoded
        plain_sum += encode(x, "int8")[1]
        blob = encode(x + fb.residuals["piece"], "int8")[0]
        bound = np.maximum(bound, np.repeat(np.frombuffer(blob, np.float32, 2, 16), INT8_BLOCK))
    drift = np.abs(sent_sum - true_sum)
    assert np.all(drift <= bound)  # |sum sent - sum true| = |residual| ≤ (largest) scale/2
    np.testing.assert_allclose(drift, np.abs(fb.residuals["piece"]), atol=1e-3)
    assert np.abs(plain_sum - true_sum).max() > 20 * drift.max()
    # streams are independent; fp16 keeps no residuals
    fb.encode("other", base)
    assert set(fb.residuals) == {"piece", "other"}
    fp16 = ErrorFeedback("fp16")
    fp16.encode("piece", base)
    assert fp16.residuals == {}


@pytest.mark.parametrize("wire", WIRES)
def test_a_blob_of_another_format_or_truncated_is_corrupt(wire: str) -> None:
    x = _values(600)
    blob, _ = encode(x, wire)
    other = WIRES[(WIRES.index(wire) + 1) % len(WIRES)]
    with pytest.raises(CorruptObject, match=f"'tmp/p'.*holds {wire} values, the job sends {other}"):
        decode(blob, other, key="tmp/p")
    for bad in (blob[:-1], blob + b"\0", blob[:10], b"XXXX" + blob[4:]):
        with pytest.raises(CorruptObject, match="'tmp/p'"):
            decode(bad, wire, key="tmp/p")


@pytest.mark.parametrize("wire", WIRES)
def test_merged_chunks_carry_the_wire(wire: str) -> None:
    x = _values(700)
    blob = encode_merged(7, 9, x, wire)
    it, stop, back = decode_merged(blob, "m", wire)
    assert (it, stop) == (7, 9)
    np.testing.assert_array_equal(back, encode(x, wire)[1])
    other = "fp16" if wire != "fp16" else "fp32"
    with pytest.raises(CorruptObject, match="'m'"):
        decode_merged(blob, "m", other)


def test_the_wire_travels_with_the_job_to_the_workers_and_to_a_resume() -> None:
    from fasdl.errors import InvalidInput
    from fasdl.kreduce.config import JobConfig
    from fasdl.kreduce.messages import JobMeta, WorkerTask
    from fasdl.kreduce.state import JobState

    cfg = JobConfig(model="mlp", wire="int8", store="memory://w")
    task = WorkerTask(job=cfg, worker=1, round=0, meta=JobMeta(10, 10, (1, 8, 8)))
    assert WorkerTask.from_dict(task.to_dict()).job.wire == "int8"
    assert JobState.from_dict(JobState(config=cfg).to_dict(), "job.json").config.wire == "int8"
    # a job state written before wire formats existed resumes in fp32
    old = JobState(config=cfg).to_dict()
    del old["config"]["wire"]
    assert JobState.from_dict(old, "job.json").config.wire == "fp32"
    assert JobConfig().wire == "fp32"
    with pytest.raises(InvalidInput, match="wire") as e:
        JobConfig(wire="fp8")
    assert e.value.field == "wire" and "int8" in str(e.value)
