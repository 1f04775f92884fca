"""Where a job's objects live. Every key names the job, so no job touches another's objects.

Every start of the workers (a round, or a retry of one) is an *attempt*, numbered across the
job; the objects the workers exchange (pieces, merged chunks, the start barrier) live under their
attempt, so a retry never reads what a failed attempt wrote. A round's checkpoints form one set,
named by the attempt that wrote it (``checkpoint_set``); the job's state (``job_state``) says
which set is the consistent one.
"""

from __future__ import annotations

import dataclasses
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
    attempt: int = 0

    @classmethod
    def for_job(cls, cfg: JobConfig, attempt: int = 0) -> Keys:
        j = cfg.job_id
        return cls(
            job_id=j,
            tmp=f"{cfg.tmp_prefix.strip('/')}/{j}/",
            merged=f"{cfg.merged_prefix.strip('/')}/{j}/",
            partition=f"{cfg.partition_prefix.strip('/')}/{j}/",
            output=f"{cfg.output_prefix.strip('/')}/{j}/",
            attempt=attempt,
        )

    def for_attempt(self, attempt: int) -> Keys:
        return dataclasses.replace(self, attempt=attempt)

    # communication (tmp and merged "buckets"), under the attempt
    def attempt_prefixes(self, attempt: int | None = None) -> list[str]:
        """Everything an attempt's workers exchange (``None``: this Keys' attempt)."""
        a = self.attempt if attempt is None else attempt
        return [f"{self.tmp}a{a:04d}/", f"{self.merged}a{a:04d}/"]

    def piece(self, iteration: int, chunk: int, sender: int) -> str:
        return f"{self.tmp}a{self.attempt:04d}/it{iteration:07d}/c{chunk}/w{sender}"

    def merged_chunk(self, iteration: int, chunk: int) -> str:
        return f"{self.merged}a{self.attempt:04d}/it{iteration:07d}/c{chunk}"

    def arrived(self, worker: int) -> str:
        return f"{self.tmp}a{self.attempt:04d}/barrier/w{worker}"

    def go(self) -> str:
        return f"{self.tmp}a{self.attempt:04d}/barrier/go"

    # checkpoints: one set per completed round, named by the attempt that wrote it
    def checkpoint_set(self, set_id: int) -> str:
        return f"{self.tmp}ckpt/a{set_id:04d}/"

    def checkpoint(self, worker: int, set_id: int) -> str:
        return f"{self.checkpoint_set(set_id)}w{worker}"

    def job_state(self) -> str:
        """The job's state: its configuration, progress, checkpoint set, retries (``JobState``)."""
        return f"{self.output}job.json"

    def lease(self) -> str:
        """Who coordinates the job now, with a heartbeat (``Lease``)."""
        return f"{self.output}lease.json"

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

    def prediction(self) -> str:
        """A planned job's predicted time and cost next to the measured ones (``fasdl train
        --plan``; the optimizer's ``PredictionCheck.to_dict``)."""
        return f"{self.output}prediction.json"

    def scratch_prefixes(self) -> list[str]:
        """What the coordinator deletes when the job finishes: communication, checkpoints and
        partitions. (A job that stops early keeps its checkpoints and partitions for resume.)"""
        return [self.tmp, self.merged, self.partition]
