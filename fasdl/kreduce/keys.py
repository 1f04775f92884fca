"""Where a job's objects live. Every key names the job, so no job touches another's objects."""

from __future__ import annotations

from dataclasses import dataclass

from fasdl.kreduce.config import JobConfig


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

    def worker_log(self, worker: int, round_: int) -> str:
        return f"{self.output}logs/w{worker}.r{round_:03d}.jsonl"

    def model(self) -> str:
        return f"{self.output}model.pt"

    def summary(self) -> str:
        return f"{self.output}summary.json"

    def invocations(self) -> str:
        return f"{self.output}invocations.json"

    def scratch_prefixes(self) -> list[str]:
        """What the coordinator deletes when the job ends: communication and partitions."""
        return [self.tmp, self.merged, self.partition]
