"""Wire formats of the model vector: how a piece or a merged chunk travels through the store.

``fp32`` sends the float32 values as they are; ``fp16`` rounds them to IEEE half precision
(round to nearest even; |x| ≤ 65504, else ``WireRangeError``); ``bf16`` keeps the top 16 bits
of each float32, rounded to nearest even (fp32's range, 8 bits of mantissa); ``int8`` sends one
signed byte per value and one float32 scale per block of ``INT8_BLOCK`` values.

The int8 scale of a block is the power of two ``s`` with absmax/127 ≤ s < 2·absmax/127, not
absmax/127 itself. It costs at most one bit of the eight, and buys exactness: q·s is exact in
float32, so decoding is exact, and encoding decoded values again gives them back bit for bit
(the largest |q| of a block is ≥ 64, so its scale comes out the same). An aggregator that
republishes its merged chunk after a restart therefore publishes exactly the weights it holds.

int8 is used with error feedback (``ErrorFeedback``): the sender adds to each value what the
previous quantisation of the same stream lost, so the running sum of what it sent tracks the
running sum of its true values within one residual (≤ s/2 per value).

Every blob starts with a 16-byte header (magic, format, count), so a blob of another format, or
a truncated one, raises ``CorruptObject`` naming its key instead of decoding into nonsense.
Pure numpy: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable

import numpy as np

from fasdl.errors import CorruptObject, WireRangeError
from fasdl.perf.transfer import INT8_BLOCK, WIRE_BYTES_PER_VALUE, WIRES

__all__ = [
    "FEEDBACK_WIRES",
    "INT8_BLOCK",
    "WIRES",
    "WIRE_BYTES_PER_VALUE",
    "ErrorFeedback",
    "check_wire",
    "decode",
    "encode",
    "wire_nbytes",
]

HEADER = struct.Struct("<4sB3xQ")  # magic, format code, count of values
_MAGIC = b"FKW1"
_CODES = {name: i for i, name in enumerate(WIRES)}  # fp32 0, fp16 1, bf16 2, int8 3
# The formats whose senders keep residuals (fp16 and bf16 only round).
FEEDBACK_WIRES: tuple[str, ...] = ("int8",)
_MIN_SCALE_EXP = -126  # the smallest int8 scale, 2^-126: a block of smaller values sends zeros


def check_wire(wire: str) -> str:
    if wire not in _CODES:
        raise ValueError(f"unknown wire format {wire!r} (known: {', '.join(WIRES)})")
    return wire


def wire_nbytes(numel: int, wire: str) -> int:
    """The bytes of the blob that ``encode`` makes of ``numel`` values (header included)."""
    check_wire(wire)
    if wire == "int8":
        return HEADER.size + 4 * -(-numel // INT8_BLOCK) + numel
    return HEADER.size + int(WIRE_BYTES_PER_VALUE[wire]) * numel


def encode(values: np.ndarray, wire: str, *, prefix: bytes = b"") -> tuple[bytes, np.ndarray]:
    """``prefix`` + the blob of ``values`` (float32, 1-D) in ``wire``, and the float32 values the
    receiver will decode from it (for fp32: ``values`` itself, not a copy)."""
    check_wire(wire)
    x = np.ascontiguousarray(values, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"a wire blob holds a 1-D vector, not shape {x.shape}")
    header = HEADER.pack(_MAGIC, _CODES[wire], x.size)
    if wire == "fp32":
        return b"".join((prefix, header, x.data)), x
    if wire == "fp16":
        with np.errstate(over="ignore"):  # an overflow is reported below, naming the fix
            h = x.astype(np.float16)
        if not np.isfinite(h).all() and np.isfinite(x).all():
            big = float(np.abs(x).max())
            raise WireRangeError(
                f"a value of magnitude {big:.4g} exceeds fp16's range (65504): use --wire bf16"
            )
        return b"".join((prefix, header, h.data)), h.astype(np.float32)
    if wire == "bf16":
        top = _bf16_bits(x)
        return b"".join((prefix, header, top.data)), _from_bf16_bits(top)
    scales, q = _int8_quantise(x)
    return b"".join((prefix, header, scales.data, q.data)), _int8_values(scales, q)


def decode(blob: bytes | memoryview, wire: str, *, key: str = "", offset: int = 0) -> np.ndarray:
    """The float32 values of the ``wire`` blob at ``blob[offset:]``; ``CorruptObject`` naming
    ``key`` if it is not one (another format, a wrong length). fp32 is a read-only view."""
    check_wire(wire)
    if len(blob) - offset < HEADER.size:
        raise CorruptObject(key, f"{len(blob) - offset} bytes is too short for a wire blob")
    magic, code, count = HEADER.unpack_from(blob, offset)
    if magic != _MAGIC:
        raise CorruptObject(key, "not a wire blob (bad magic)")
    if code != _CODES[wire]:
        name = WIRES[code] if code < len(WIRES) else f"code {code}"
        raise CorruptObject(key, f"holds {name} values, the job sends {wire}")
    size = len(blob) - offset
    if size != wire_nbytes(count, wire):
        raise CorruptObject(
            key, f"{size} bytes, {count} {wire} values take {wire_nbytes(count, wire)}"
        )
    start = offset + HEADER.size
    if wire == "fp32":
        return np.frombuffer(blob, dtype=np.float32, count=count, offset=start)
    if wire == "fp16":
        return np.frombuffer(blob, dtype=np.float16, count=count, offset=start).astype(np.float32)
    if wire == "bf16":
        return _from_bf16_bits(np.frombuffer(blob, dtype=np.uint16, count=count, offset=start))
    blocks = -(-count // INT8_BLOCK)
    scales = np.frombuffer(blob, dtype=np.float32, count=blocks, offset=start)
    q = np.frombuffer(blob, dtype=np.int8, count=count, offset=start + 4 * blocks)
    return _int8_values(scales, q)


class ErrorFeedback:
    """A sender's residuals, one per stream (say, the piece of chunk c, or merged chunk w).

    ``encode(stream, values)`` sends values + the stream's residual and keeps what that lost; for
    a format without feedback (fp32, fp16, bf16) it is plain ``encode``. Residuals live in memory
    only: a new invocation (a checkpoint's resume) starts them at zero. Streams are independent,
    so different streams may be encoded from different threads.
    """

    def __init__(self, wire: str) -> None:
        self.wire = check_wire(wire)
        self.residuals: dict[Hashable, np.ndarray] = {}

    def encode(
        self, stream: Hashable, values: np.ndarray, *, prefix: bytes = b""
    ) -> tuple[bytes, np.ndarray]:
        if self.wire not in FEEDBACK_WIRES:
            return encode(values, self.wire, prefix=prefix)
        residual = self.residuals.get(stream)
        x = values.astype(np.float32) if residual is None else values + residual
        blob, decoded = encode(x, self.wire, prefix=prefix)
        self.residuals[stream] = x - decoded
        return blob, decoded


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """The top 16 bits of each float32, rounded to nearest even; NaN stays a (quiet) NaN."""
    u = x.view(np.uint32)
    rounded = ((u + (np.uint32(0x7FFF) + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = 0x7FC0
    return rounded


def _from_bf16_bits(top: np.ndarray) -> np.ndarray:
    out: np.ndarray = (top.astype(np.uint32) << 16).view(np.float32)
    return out


def _int8_quantise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per block of INT8_BLOCK values: its power-of-two scale, and q = rint(x / scale)."""
    if not np.isfinite(x).all():
        raise WireRangeError("cannot quantise an infinity or a NaN to int8 (did training diverge?)")
    full = x.size // INT8_BLOCK
    absmax = np.empty(-(-x.size // INT8_BLOCK), dtype=np.float64)
    if full:
        body = x[: full * INT8_BLOCK].reshape(full, INT8_BLOCK)
        absmax[:full] = np.maximum(body.max(axis=1), -body.min(axis=1))
    if len(absmax) > full:
        tail = x[full * INT8_BLOCK :]
        absmax[full] = max(float(tail.max()), -float(tail.min()))
    # the power of two s with absmax/127 ≤ s < 2·absmax/127: mantissa in [0.5, 1), so
    # ceil(log2(r)) is the exponent, one less when r is itself a power of two
    mant, exp = np.frexp(absmax / 127.0)
    exp = np.where(mant == 0.5, exp - 1, exp)
    exp = np.maximum(exp, _MIN_SCALE_EXP)
    scales = np.ldexp(1.0, exp).astype(np.float32)
    y = _by_block(x, np.ldexp(1.0, -exp).astype(np.float32))  # x / s, exactly (s: 2^k)
    np.rint(y, out=y)
    np.clip(y, -127, 127, out=y)  # |x| ≤ 127 s already: a guard, not a saturation
    return scales, y.astype(np.int8)


def _int8_values(scales: np.ndarray, q: np.ndarray) -> np.ndarray:
    return _by_block(q, scales)


def _by_block(values: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """float32 ``values[i] * factors[i // INT8_BLOCK]``, without a per-value copy of the factors."""
    out = np.empty(values.size, dtype=np.float32)
    full = values.size // INT8_BLOCK
    if full:
        n = full * INT8_BLOCK
        np.multiply(
            values[:n].reshape(full, INT8_BLOCK),
            factors[:full, None],
            out=out[:n].reshape(full, INT8_BLOCK),
            dtype=np.float32,
        )
    if len(factors) > full:
        np.multiply(
            values[full * INT8_BLOCK :],
            factors[full],
            out=out[full * INT8_BLOCK :],
            dtype=np.float32,
        )
    return out
