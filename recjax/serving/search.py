"""The highest offered rate whose tail latency meets a target: bracket, then bisect.

Each probe is a whole bounded open-loop run at one offered rate. From a starting rate the search
doubles while runs meet the target (or halves while they miss) until one run meets it and another,
higher, misses. It stops halving early once a missing run barely queued: its service time alone
misses the target, and lower rates cannot help. It then bisects the bracket until the failing rate
is within `resolution` of the passing one (hi <= lo * (1 + resolution)), and returns the highest
measured rate that met the target and the lowest measured higher rate that missed it: the "next
step up". Runs are noisy, so latency need not be monotone in the rate; the search reports the runs
it made, each as measured.
"""

import dataclasses
from collections.abc import Callable

from recjax.serving.run_summary import RunSummary


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Attributes:
    best: the highest-rate run that met the target; None if none did.
    next_step_up: the lowest-rate run above `best` that missed it; None if none did.
    converged: next_step_up.qps <= best.qps * (1 + resolution).
    service_bound: the search stopped halving because a run missed the target without queueing.
    runs: every run, in the order made.
    """

    best: RunSummary | None
    next_step_up: RunSummary | None
    converged: bool
    service_bound: bool
    resolution: float
    runs: tuple[RunSummary, ...]


def search_max_qps(
    run_at: Callable[[float], RunSummary],
    meets: Callable[[RunSummary], bool],
    start_qps: float,
    resolution: float,
    max_runs: int,
    barely_queued: Callable[[RunSummary], bool] = lambda run: False,
    min_qps: float = 1e-3,
) -> SearchResult:
    """Searches with at most `max_runs` calls of run_at(qps); see the module docstring.

    `barely_queued(run)` says a run's latency was nearly all service time; a missing run that
    barely queued ends the halving.
    """
    if start_qps <= 0 or not 0 < resolution < 1 or max_runs < 2:
        raise ValueError(
            f"Need start_qps > 0, 0 < resolution < 1 and max_runs >= 2; got {start_qps}, "
            f"{resolution}, {max_runs}."
        )
    runs: list[RunSummary] = []
    passing: RunSummary | None = None
    failing: RunSummary | None = None

    def probe(qps: float) -> bool:
        nonlocal passing, failing
        run = run_at(qps)
        runs.append(run)
        if meets(run):
            passing = run
            return True
        failing = run
        return False

    qps = start_qps
    service_bound = False
    while len(runs) < max_runs:
        met = probe(qps)
        if passing is not None and failing is not None:
            break
        if not met and barely_queued(runs[-1]):
            service_bound = True
            break
        qps = qps * 2 if met else qps / 2
        if qps < min_qps:
            break
    while (
        passing is not None
        and failing is not None
        and failing.qps > passing.qps * (1 + resolution)
        and len(runs) < max_runs
    ):
        probe((passing.qps + failing.qps) / 2)
    converged = (
        passing is not None
        and failing is not None
        and failing.qps <= passing.qps * (1 + resolution)
    )
    return SearchResult(passing, failing, converged, service_bound, resolution, tuple(runs))
