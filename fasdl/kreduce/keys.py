"""Where a job's objects live. Every key names the job, so no job touches another's objects."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fasdl.kreduce.config import JobConfig

_WORKER_LOG = re.compile(r"w(\d+)\.r(\d+)\.jsonl")


@dataclass(frozen=True)
class Keys:
    job_id: str
    tmp: str
    merged: str
    partition: str
    output: str

    @classmethod
    def for_job(cls, cfg: JobConfig) -> Keys:
        j = cfg.job_id
        return cls(
            job_id=j,
            tmp=f"{cfg.tmp_prefix.strip('/')}/{j}/",
            merged=f"{cfg.merged_prefix.strip('/')}/{j}/",
            partition=f"{cfg.partition_prefix.strip('/')}/{j}/",
            output=f"{cfg.output_prefix.strip('/')}/{j}/",
        )

    # communication (tmp and merged "buckets")
    def piece(self, iteration: int, chunk: int, sender: int) -> str:
        return f"{self.tmp}it{iteration:07d}/c{chunk}/w{sender}"

    def merged_chunk(self, iteration: int, chunk: int) -> str:
        return f"{self.merged}it{iteration:07d}/c{chunk}"

    def checkpoint(self, worker: int) -> str:
        return f"{self.tmp}ckpt/w{worker}"

    def arrived(self, round_: int, worker: int) -> str:
        return f"{self.tmp}barrier/r{round_}/w{worker}"

    def go(self, round_: int) -> str:
        return f"{self.tmp}barrier/r{round_}/go"

    # data
    def partition_of(self, worker: int) -> str:
        return f"{self.partition}w{worker}.npz"

    # outputs
    def progress(self) -> str:
        return f"{self.output}progress.json"

    def logs(self) -> str:
        """The prefix of every worker's per-iteration logs."""
        return f"{self.output}logs/"

    def worker_log(self, worker: int, round_: int) -> str:
        return f"{self.logs()}w{worker}.r{round_:03d}.jsonl"

    def parse_worker_log(self, key: str) -> tuple[int, int] | None:
        """(worker, round) of a key written by ``worker_log``; None for any other key."""
        if not key.startswith(self.logs()):
            return None
        m = _WORKER_LOG.fullmatch(key[len(self.logs()) :])
        return (int(m[1]), int(m[2])) if m else None

    def model(self) -> str:
        return f"{self.output}model.pt"

    def summary(self) -> str:
        return f"{self.output}summary.json"

    def invocations(self) -> str:
        return f"{self.output}invocations.json"

    def scratch_prefixes(self) -> list[str]:
        """What the coordinator deletes when the job ends: communication and partitions."""
        return [self.tmp, self.merged, self.partition]
