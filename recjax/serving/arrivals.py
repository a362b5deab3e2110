"""Open-loop arrivals: a Poisson process drawn in advance on an absolute schedule.

A Poisson process of rate `qps` has independent exponential inter-arrival times of mean 1/qps.
The whole schedule is drawn before serving starts, so a slow server cannot slow the arrivals down:
each request's latency is measured from its *scheduled* arrival time (no coordinated omission).
"""

import numpy as np


def poisson_arrival_times(
    qps: float, duration_s: float, max_requests: int, rng: np.random.Generator
) -> np.ndarray:
    """Arrival times in seconds from the start, [N] increasing, all < duration_s, N <= max_requests.

    Inter-arrival times are exponential with mean 1/qps (`rng.exponential`, continuous: no
    rounding to milliseconds).
    """
    if qps <= 0 or duration_s <= 0 or max_requests < 1:
        raise ValueError(
            f"Need qps > 0, duration_s > 0 and max_requests >= 1; got qps={qps}, "
            f"duration_s={duration_s}, max_requests={max_requests}."
        )
    expected = qps * duration_s
    times = np.empty(0)
    while (times.size == 0 or times[-1] < duration_s) and times.size < max_requests:
        # Enough gaps to pass duration_s almost always in one draw: the mean plus 6 sigma.
        count = min(int(expected + 6 * np.sqrt(expected)) + 16, max_requests)
        start = times[-1] if times.size else 0.0
        gaps = rng.exponential(1.0 / qps, size=count)
        times = np.concatenate([times, start + np.cumsum(gaps)])
    times = times[times < duration_s]
    return times[:max_requests]
