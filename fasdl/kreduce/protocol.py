"""The K-Reduce collective, written once against ``ObjectStore``.

W workers; workers 0..K-1 aggregate (batch B), the others train with batch A. In iteration t
every worker puts the chunks of its vector it does not own; aggregator i waits for the W-1
pieces of chunk i, averages them with its own and puts the merged chunk; aggregators fetch the
other K-1 merged chunks of t, non-aggregators fetch all K merged chunks of t-1 (one iteration
stale, never waiting for the aggregation of t; in iteration 1 they keep their own weights).

The synchronous baselines are the same collective with every worker waiting for merged(t):
ScatterReduce is K = W with equal batches (all workers aggregate), AllReduce (LambdaML's) is
K = 1 with equal batches and ``synchronous=True``: the non-aggregators wait for aggregator 0's
merged model of the current iteration.

The average (``merge``; ``"mean"`` by default, as measured in docs/kreduce.md): ``"batch"`` weights each worker by its share of the global batch — after
one SGD step from the same weights this equals one step on the union of the batches (the mean
gradient of the global batch); ``"mean"`` weights every worker equally, as the original FasDL
does. The two agree when batches are equal.

Every object starts with when its sender expects it to land (``STAMP``), so that a receiver
sends its first GET for the next one when it is due rather than polling for it
(``fasdl.store.arrivals``; docs/kreduce.md, "Polls"). Every merged chunk then carries a small
header with the iteration and the agreed stop iteration (decided by aggregator 0), so all
workers learn where to checkpoint without extra requests.
"""

from __future__ import annotations

import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from fasdl.errors import CommunicationTimeout, CorruptObject, WaitTimeout
from fasdl.kreduce.config import MERGES
from fasdl.kreduce.keys import Keys
from fasdl.store.arrivals import STAMP, ArrivalModel
from fasdl.store.base import ObjectStore
from fasdl.training import wire as codec
from fasdl.training.vector import chunk_bounds

POLL_INITIAL_S = 0.002  # the first pause between polls of a missing key, at the least
POLL_MAX_S = 0.05  # the longest pause between polls of a missing key

_HEADER = struct.Struct("<4sqq")  # magic, iteration, stop_at (0: not decided); then a wire blob
_MAGIC = b"FKR2"  # FKR1 held raw float32 values after the header


def merge_weights(batch_sizes: list[int], merge: str) -> np.ndarray:
    """Each worker's weight in the average: its share of the global batch, or 1/W (``"mean"``)."""
    if merge not in MERGES:
        raise ValueError(f"unknown merge {merge!r}")  # JobConfig validates the user's choice
    b = np.asarray(batch_sizes, dtype=np.float64)
    if merge == "mean":
        b = np.ones_like(b)
    weights: np.ndarray = (b / b.sum()).astype(np.float32)
    return weights


def weighted_sum(parts: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """sum_w weights[w] * parts[w], accumulated in worker order (the reference does the same)."""
    acc: np.ndarray = np.multiply(parts[0], weights[0], dtype=np.float32)
    tmp = np.empty_like(acc)
    for w in range(1, len(parts)):
        np.multiply(parts[w], weights[w], out=tmp)
        acc += tmp
    return acc


def merged_header(iteration: int, stop_at: int) -> bytes:
    return _HEADER.pack(_MAGIC, iteration, stop_at)


def encode_merged(
    iteration: int, stop_at: int, values: np.ndarray, wire: str = "fp32", *, prefix: bytes = b""
) -> bytes:
    """A merged chunk: ``prefix`` (the send stamp), the header, then ``values`` in ``wire``
    (``fasdl.training.wire``)."""
    return codec.encode(values, wire, prefix=prefix + merged_header(iteration, stop_at))[0]


def decode_merged(
    blob: bytes, key: str = "", wire: str = "fp32", *, offset: int = 0
) -> tuple[int, int, np.ndarray]:
    """(iteration, stop_at, values) of a merged chunk starting at ``offset`` of ``blob``;
    ``CorruptObject`` (a ``ValueError``) naming ``key`` if it is not one, or not in ``wire``."""
    if len(blob) < offset + _HEADER.size:
        raise CorruptObject(key, f"{len(blob)} bytes is not a K-Reduce merged chunk")
    magic, iteration, stop_at = _HEADER.unpack_from(blob, offset)
    if magic != _MAGIC:
        raise CorruptObject(key, "not a K-Reduce merged chunk")
    return iteration, stop_at, codec.decode(blob, wire, key=key, offset=offset + _HEADER.size)


@dataclass
class Timings:
    upload_s: float = 0.0
    aggregate_s: float = 0.0
    download_s: float = 0.0

    @property
    def comm_s(self) -> float:
        return self.upload_s + self.aggregate_s + self.download_s


@dataclass
class ExchangeResult:
    vector: np.ndarray | None  # the new model vector; None: keep your own (non-aggregator, t = 1)
    stop_at: int  # 0 if not (yet) known
    timings: Timings = field(default_factory=Timings)


class KReduce:
    """One worker's side of the collective. ``exchange`` runs steps 3-6 of an iteration."""

    def __init__(
        self,
        store: ObjectStore,
        keys: Keys,
        *,
        worker: int,
        batch_sizes: list[int],
        num_aggregators: int,
        numel: int,
        timeout_s: float,
        merge: str = "mean",
        synchronous: bool = False,
        io_threads: int = 8,
        wire: str = "fp32",
    ) -> None:
        # Every object starts with when its sender expects it to land (``STAMP``), so that
        # receivers learn when the next is due (``ArrivalModel``).
        self.store = store
        self._put_s: dict[int, float] = {}  # bits of an object's length -> its last PUT's s
        self.keys = keys
        self.worker = worker
        self.num_workers = len(batch_sizes)
        self.k = num_aggregators
        self.weights = merge_weights(batch_sizes, merge)
        self.synchronous = synchronous
        self.bounds = chunk_bounds(numel, num_aggregators)
        self.numel = numel
        self.timeout_s = timeout_s  # the wait for a peer; may change before each exchange
        self.io_threads = io_threads
        # How pieces and merged chunks travel (docs/kreduce.md, "Wire formats"); int8 keeps a
        # residual per piece it sends and per merged chunk it puts (error feedback).
        self.wire = codec.check_wire(wire)
        self._feedback = codec.ErrorFeedback(wire)
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="kreduce-io")
        # When each awaited object will land, from its sender's sends: the first GET for it is
        # sent then, not at once (docs/kreduce.md, "Polls").
        self.arrivals = ArrivalModel()
        self._learn = False  # not from the first exchange: it waits for the peers to start
        self._exchanges = 0

    @property
    def is_aggregator(self) -> bool:
        return self.worker < self.k

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _wait_all(
        self, keys: list[str], what: list[str], tags: list[tuple[str, int]]
    ) -> list[bytes]:
        """Wait for ``keys``, sending the first GET for each when its sender's history says it
        is due (``tags`` name the recurring objects for ``self.arrivals``)."""
        now = time.time()
        plans = [self.arrivals.schedule(tag) if self._schedules(tag) else None for tag in tags]
        try:
            got = self.store.wait_all_timed(
                keys,
                self.timeout_s,
                what=what,
                pool=self._pool,
                parallel=self.io_threads,
                expected_s=[p.first - now if p else 0.0 for p in plans],
                recheck_s=[p.recheck - now if p else 0.0 for p in plans],
                # a late object is polled on the scale of its sender's irregularity
                poll_initial_s=min(
                    POLL_MAX_S,
                    max([POLL_INITIAL_S] + [p.spread / 4 for p in plans if p is not None]),
                ),
                poll_max_s=POLL_MAX_S,
            )
        except WaitTimeout as e:
            raise CommunicationTimeout(f"worker {self.worker}: {e}") from None
        for key, tag, arrival, blob in zip(keys, tags, got.arrivals, got.blobs, strict=True):
            if len(blob) < STAMP.size:
                raise CorruptObject(key, f"{len(blob)} bytes cannot hold a K-Reduce object")
            if self._learn:
                self.arrivals.observe(tag, STAMP.unpack_from(blob)[0], now + arrival.found_s)
        return got.blobs

    def _schedules(self, tag: tuple[str, int]) -> bool:
        """Whether the wait for ``tag`` sends its first GET when due rather than at once: only
        where the sender does not wait for this worker in the same iteration. Aggregators wait
        for each other's pieces and merged chunks, and synchronous non-aggregators for the
        merged chunks their own pieces made: rings in which a GET sent late delays everyone
        (measured 15-380 % slower; docs/kreduce.md, "Polls"). The stale merged chunks a
        non-aggregator reads and the pieces of non-aggregators are not in such a ring."""
        kind, who = tag
        if kind == "piece":
            return who >= self.k
        return not self.is_aggregator and not self.synchronous

    def _stamp(self, numel: int) -> bytes:
        """The first bytes of an object of ``numel`` values: when it should land, on this
        worker's clock: now plus how long this worker's last PUT of such an object took (a large
        object's PUT takes long and varies; the receiver cares when it lands)."""
        return STAMP.pack(time.time() + self._put_s.get(numel.bit_length(), 0.0))

    def _put(self, key: str, blob: bytes, numel: int) -> None:
        start = time.monotonic()
        self.store.put(key, blob)
        self._put_s[numel.bit_length()] = time.monotonic() - start

    def exchange(self, t: int, vec: np.ndarray, *, stop_at: int = 0) -> ExchangeResult:
        """Send this worker's vector of iteration ``t`` and return what it continues from.

        ``stop_at`` is only used by aggregator 0, which writes it into its merged chunk.
        """
        tm = Timings()
        self._learn, self._exchanges = self._exchanges > 0, self._exchanges + 1
        w, k = self.worker, self.k
        # 3. put every chunk this worker does not own. (Gathering while one's own pieces upload
        # saves no time on a saturated store and costs polls: 280 GETs per iteration against 160
        # for ScatterReduce at W = 8 on SeaweedFS.)
        t0 = time.perf_counter()
        list(self._pool.map(self._put_piece, [(t, c, vec) for c in range(k) if c != w]))
        tm.upload_s = time.perf_counter() - t0

        if not self.is_aggregator:
            # 5. non-aggregators: the merged model of t-1, one iteration stale (or, synchronous,
            # wait for the merged model of t)
            source = t if self.synchronous else t - 1
            if source == 0:
                return ExchangeResult(None, 0, tm)
            t1 = time.perf_counter()
            new = np.empty(self.numel, dtype=np.float32)
            stop = self._fetch_merged(source, list(range(k)), new)
            tm.download_s = time.perf_counter() - t1
            return ExchangeResult(new, stop, tm)

        # 4. aggregate chunk w: wait for the W-1 pieces, average with weights, put the merged chunk
        t1 = time.perf_counter()
        others = [s for s in range(self.num_workers) if s != w]
        blobs = self._wait_all(
            [self.keys.piece(t, w, s) for s in others],
            [f"chunk {w} of iteration {t} from worker {s}" for s in others],
            [("piece", s) for s in others],
        )
        parts: list[np.ndarray] = [np.empty(0, np.float32)] * self.num_workers
        parts[w] = self._slice(vec, w)
        for s, blob in zip(others, blobs, strict=True):
            key = self.keys.piece(t, w, s)
            parts[s] = codec.decode(blob, self.wire, key=key, offset=STAMP.size)
            if parts[s].size != parts[w].size:
                raise CorruptObject(
                    key, f"{parts[s].size} values, a piece of chunk {w} has {parts[w].size}"
                )
        my_stop = stop_at if w == 0 else 0
        # Everyone continues from the merged chunk as decoded, this aggregator too: the workers
        # that share chunk w must hold the same weights for it.
        n = parts[w].size
        blob, merged = self._feedback.encode(
            ("merged", w),
            weighted_sum(parts, self.weights),
            prefix=self._stamp(n) + merged_header(t, my_stop),
        )
        self._put(self.keys.merged_chunk(t, w), blob, n)
        # Pieces of t are consumed. Merged chunk w of t-2 was read by the aggregators in t-2 and
        # by the non-aggregators in t-1, all of whom have sent their pieces of t since.
        done = [self.keys.piece(t, w, s) for s in others]
        if t > 2:
            done.append(self.keys.merged_chunk(t - 2, w))
        self.store.delete(done)
        tm.aggregate_s = time.perf_counter() - t1

        # 5. fetch the other K-1 merged chunks of t
        t1 = time.perf_counter()
        out = np.empty(self.numel, dtype=np.float32)
        a, b = self.bounds[w]
        out[a:b] = merged
        stop = self._fetch_merged(t, [c for c in range(k) if c != w], out)
        tm.download_s = time.perf_counter() - t1
        return ExchangeResult(out, stop_at if w == 0 else stop, tm)

    def republish_merged(self, t: int, vec: np.ndarray) -> None:
        """Put this aggregator's merged chunk of iteration ``t`` again, from its vector (which is
        merged(t) after iteration t): a resumed attempt's non-aggregators read it next."""
        w = self.worker
        # Decoded values encode to themselves in every wire format (``fasdl.training.wire``):
        # the non-aggregators read exactly the weights this aggregator holds. No error feedback.
        mine = self._slice(vec, w)
        blob = encode_merged(t, 0, mine, self.wire, prefix=self._stamp(mine.size))
        self._put(self.keys.merged_chunk(t, w), blob, mine.size)

    def _put_piece(self, args: tuple[int, int, np.ndarray]) -> None:
        """Put chunk c of the vector as this worker's piece of iteration t; ``args`` is (t, c, vec)."""
        t, c, vec = args
        piece = self._slice(vec, c)
        blob, _ = self._feedback.encode(("piece", c), piece, prefix=self._stamp(piece.size))
        self._put(self.keys.piece(t, c, self.worker), blob, piece.size)

    def _slice(self, vec: np.ndarray, c: int) -> np.ndarray:
        a, b = self.bounds[c]
        return vec[a:b]

    def _fetch_merged(self, t: int, chunks: list[int], out: np.ndarray) -> int:
        """Get merged chunks of iteration ``t`` into ``out``; return the stop iteration (chunk 0's)."""
        blobs = self._wait_all(
            [self.keys.merged_chunk(t, c) for c in chunks],
            [f"merged chunk {c} of iteration {t}" for c in chunks],
            [("merged", c) for c in chunks],
        )
        stop = 0
        for c, blob in zip(chunks, blobs, strict=True):
            key = self.keys.merged_chunk(t, c)
            it, stop_c, values = decode_merged(blob, key, self.wire, offset=STAMP.size)
            a, b = self.bounds[c]
            if it != t or len(values) != b - a:
                raise CorruptObject(
                    key,
                    f"holds iteration {it} with {len(values)} values, expected iteration {t} "
                    f"with {b - a}",
                )
            out[a:b] = values
            if c == 0:
                stop = stop_c
        return stop
