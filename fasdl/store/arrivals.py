"""When a recurring wait's objects will land, from when their senders sent them: to poll less.

A collective waits for the same objects every iteration (aggregator 3's piece from worker 5, the
merged chunk 0). Polling blindly sends one GET per poll interval for as long as a wait lasts:
2.8-5.4 times the GETs that carry data (docs/kreduce.md, "Polls"). A wait that knows when an object
will land sends its first GET for it then, and almost only GETs that carry data.

Learning that from the waits alone does not work: a GET that finds an object says only that it
landed before, so the estimate drifts late, a late worker sends late, and its peers learn to
wait longer still (measured: 1.5-2.4x slower exchanges). So each object carries when its sender
expects it to land (``STAMP``, on the sender's clock: its PUT's start plus how long its last
PUT of such an object took; the K-Reduce protocol writes it in front of every object it puts,
in the same copy as the encoding), and the receiver learns per tag:

- the sender's period: the median gap between its last sends (exact, whatever the receiver did);
- the lag from that time to the GET that found the object: the error of the sender's guess plus
  the offset between the two clocks, which is constant for a job. The smallest recent lag is
  kept: the earliest the object has been seen; time found beyond it counts as waited too long.

The next object is expected at ``last send + period + lag`` on the receiver's clock (``first``);
if that GET misses, the next goes as late as the sender's recent periods and lags vary
(``recheck``), then the store's backoff, starting from a quarter of that spread. An
object whose sender is early is found at once; one that is late costs a few GETs, not a wait
full of them. Clocks that disagree only shift the lag, which is learnt; a clock that jumps costs
one iteration of polls. Pure code: no I/O, times are passed in.
"""

from __future__ import annotations

import itertools
import statistics
import struct
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

HISTORY = 5  # sends and lags remembered per tag
STAMP = struct.Struct("<d")  # when the sender expects the object to land (its epoch seconds)


@dataclass(frozen=True)
class Arrival:
    """How an object of a wait was found: when the GET that found it was sent (seconds after
    the wait began) and how many GETs were sent for it (1: found at the first)."""

    found_s: float
    probes: int


@dataclass(frozen=True)
class Schedule:
    """When to send the first GET for an object, and the next if the first misses (the
    receiver's epoch seconds)."""

    first: float
    recheck: float

    @property
    def spread(self) -> float:
        """How far the object may land after ``first`` (seconds): the scale of polling for it."""
        return self.recheck - self.first


@dataclass
class _Tag:
    sends: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))


class ArrivalModel:
    """Per tag, when its next object will land; ``None`` (ask at once) until two were seen."""

    def __init__(self) -> None:
        self._tags: dict[Hashable, _Tag] = {}

    def schedule(self, tag: Hashable) -> Schedule | None:
        t = self._tags.get(tag)
        if t is None or len(t.sends) < 2:
            return None
        gaps = [b - a for a, b in itertools.pairwise(t.sends)]
        lag = min(t.lags)
        # A GET sent after the object landed finds it all the same, so a receiver that waited
        # too long would learn nothing, its own sends would come later, and its peers would
        # learn to wait longer: the waits would settle at any pace slower than the possible
        # one. So the time found beyond the fastest lag counts as waited too long, and the next
        # first GET goes that much earlier.
        excess = statistics.median(x - lag for x in t.lags)
        first = t.sends[-1] + max(0.0, statistics.median(gaps) - excess) + lag
        # if the first GET misses: the sender is late by up to half its period's spread, or the
        # transfer took longer than the fastest
        late = (max(gaps) - min(gaps)) / 2 + excess
        return Schedule(first, first + late)

    def observe(self, tag: Hashable, sent_at: float, found_at: float) -> None:
        """The object of ``tag`` sent at ``sent_at`` (sender's clock) was found by a GET sent at
        ``found_at`` (receiver's clock)."""
        t = self._tags.setdefault(tag, _Tag())
        if t.sends and sent_at <= t.sends[-1]:
            return  # the same object again (a resumed sender), or a clock that went back
        t.sends.append(sent_at)
        t.lags.append(found_at - sent_at)
