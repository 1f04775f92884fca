"""The profiling function's task: what ``profile.py`` asks ``handler.py`` to time, as a frozen type.

It crosses a process boundary as the invocation's JSON event (``to_dict`` on the way out,
``from_dict`` on the way in, which validates every key and names the one that is wrong). Only
the standard library and fasdl's stdlib-only modules are imported: the function imports torch
later, only for a training task.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fasdl.errors import InvalidInput
from fasdl.validate import finite_number, json_object, known_keys, positive_number, whole_number

DEFAULT_SAMPLE_S = 0.5
KIND = "train"


@dataclass(frozen=True, kw_only=True)
class ProfileTask:
    """Time ``iterations`` samples of training ``model`` with batch ``batch_size`` on the data
    sample at ``data_key`` in ``store`` (after ``warmup`` untimed iterations), and the
    transformation of its vector into ``chunks`` chunks."""

    model: str
    store: str
    data_key: str
    batch_size: int
    iterations: int
    warmup: int
    chunks: int = 1
    seed: int = 0
    sample_s: float = DEFAULT_SAMPLE_S
    lr: float = 0.05
    momentum: float = 0.9

    def __post_init__(self) -> None:
        for name in ("model", "store", "data_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidInput(name, f"{value!r} is not a non-empty string")
        whole_number(self.batch_size, "batch_size", minimum=1)
        whole_number(self.iterations, "iterations", minimum=1)
        whole_number(self.warmup, "warmup", minimum=0)
        whole_number(self.chunks, "chunks", minimum=1)
        whole_number(self.seed, "seed", minimum=0)
        positive_number(self.sample_s, "sample_s", unit="s")
        positive_number(self.lr, "lr")
        finite_number(self.momentum, "momentum", minimum=0)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: object, where: str = "event") -> ProfileTask:
        """The task of an event; ``InvalidInput`` names the key (``event.batch_size``)."""
        e = json_object(d, where)
        names = {f.name for f in dataclasses.fields(cls)}
        known_keys(e, names | {"kind"}, where)
        kind = e.get("kind", KIND)
        if kind != KIND:
            raise InvalidInput(f"{where}.kind", f"{kind!r} is not a training task ({KIND!r})")
        try:
            return cls(**{k: v for k, v in e.items() if k in names})
        except TypeError as err:  # a required key is missing
            missing = sorted(
                f.name
                for f in dataclasses.fields(cls)
                if f.name not in e and f.default is dataclasses.MISSING
            )
            raise InvalidInput(f"{where}.{missing[0]}" if missing else where, "missing") from err
        except InvalidInput as err:
            raise err.named_as(f"{where}.{err.field}") from None
