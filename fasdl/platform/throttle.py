"""CPU in proportion to memory without root: CFS-bandwidth-style duty cycling (the pure core).

Time is cut into periods of ``period_s`` on a fixed grid. In each period a function may use
``vcpus * period_s`` of CPU time summed over all its threads. The supervisor samples the
process's cumulative CPU time; once the period's quota is spent the process is stopped (SIGSTOP)
until the period ends. CPU used past the quota (the supervisor noticed late, several threads ran
at once) is debt that shrinks the following periods' quota, so the long-run rate is exact; quota
left unused is lost, as with Linux's CFS bandwidth control, so an idle function cannot bank CPU
for a later burst.

The grid is fixed rather than restarted on resume: if the supervisor resumes a process a little
late, the process still has the rest of the period to spend its quota, so supervisor latency
costs nothing as long as the quota is below what the process could use in the whole period.

This module does no I/O: the supervisor in ``local.py`` reads CPU times and sends the signals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fasdl.validate import positive_number

DEFAULT_PERIOD_S = 0.05
MIN_CHECK_INTERVAL_S = 0.001  # never poll a process more often than this


@dataclass(frozen=True)
class Decision:
    """Whether the process may run now, and the latest time the budget must be consulted again."""

    run: bool
    next_check: float


class CpuBudget:
    """The CPU budget of one process: feed it (time, cumulative CPU seconds), obey the decision."""

    def __init__(
        self, vcpus: float, *, now: float, cpu_s: float, period_s: float = DEFAULT_PERIOD_S
    ) -> None:
        positive_number(vcpus, "vcpus")
        positive_number(period_s, "period_s", unit="s")
        self.vcpus = vcpus
        self.period_s = period_s
        self.quota_s = vcpus * period_s
        self.period_start = now
        self.cpu_at_period_start = cpu_s
        self.allowance_s = self.quota_s  # this period's quota minus debt carried in
        self.periods_stopped = 0  # periods in which the process was stopped at least once
        self._stopped_this_period = False

    @property
    def period_end(self) -> float:
        return self.period_start + self.period_s

    @property
    def debt_s(self) -> float:
        """CPU seconds owed from earlier periods (what the current allowance falls short of the quota)."""
        return max(0.0, self.quota_s - self.allowance_s)

    def update(self, now: float, cpu_s: float, *, max_rate: float = 1.0) -> Decision:
        """Account CPU used up to ``now``; ``max_rate`` is how many CPUs the process can use at most
        (its runnable threads, capped by the machine's cores), to know how soon it could overspend.
        """
        if now >= self.period_end:
            self._roll(now, cpu_s)
        remaining_s = self.allowance_s - (cpu_s - self.cpu_at_period_start)
        if remaining_s <= 0:
            if not self._stopped_this_period:
                self._stopped_this_period = True
                self.periods_stopped += 1
            return Decision(run=False, next_check=self.period_end)
        soonest_exhaustion = now + remaining_s / max(max_rate, 1e-9)
        next_check = min(self.period_end, max(soonest_exhaustion, now + MIN_CHECK_INTERVAL_S))
        return Decision(run=True, next_check=next_check)

    def _roll(self, now: float, cpu_s: float) -> None:
        """Close the periods that ended before ``now``: overspending becomes debt, credit is dropped."""
        periods_elapsed = math.floor((now - self.period_start) / self.period_s)
        used_s = cpu_s - self.cpu_at_period_start
        # One sample spans every elapsed period, so it is checked against all their quotas together.
        available_s = self.allowance_s + (periods_elapsed - 1) * self.quota_s
        debt_s = max(0.0, used_s - available_s)
        self.period_start += periods_elapsed * self.period_s
        self.cpu_at_period_start = cpu_s
        self.allowance_s = self.quota_s - debt_s
        self._stopped_this_period = False
