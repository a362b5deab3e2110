"""The open-loop server against a stand-in model of known service time, checked by queueing theory.

Each test runs for at most a few seconds of wall time (sleeps, not CPU).
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

from recjax.serving.query_sizes import QuerySizeDistribution
from recjax.serving.run_summary import summarize
from recjax.serving.server import machine_busy_cpu_s, make_schedule, serve_schedule
from recjax.serving.sub_batches import padded_sizes

ONE_ITEM = QuerySizeDistribution.parse("fixed:1")


def serve(schedule, model, workers=1, sub_batch=1, drain_timeout_s=10.0):
    return serve_schedule(
        schedule,
        model,
        workers=workers,
        sub_batch=sub_batch,
        compiled_sizes=padded_sizes(sub_batch),
        drain_timeout_s=drain_timeout_s,
    )


def lindley_waits(arrival_s: np.ndarray, service_s: np.ndarray) -> np.ndarray:
    """Waiting times of a single FIFO server (Lindley's recursion), the independent reference."""
    waits = np.empty_like(arrival_s)
    free_at = 0.0
    for request, arrival in enumerate(arrival_s):
        start = max(arrival, free_at)
        waits[request] = start - arrival
        free_at = start + service_s[request]
    return waits


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loadgen-worker")]


def test_one_worker_matches_md1_mean_waiting_time(fixed_service_time):
    """M/D/1 at utilization 0.5: W = rho * S / (2 (1 - rho)) = 2 ms for S = 4 ms, 500 requests.

    The mean of 500 waits from one schedule is itself random: simulating an ideal M/D/1 queue over
    400 seeds gives it a relative standard deviation of 16 %. Seed 1 is used because its schedule
    is typical (an ideal queue fed it waits 0.98 W on average; seed 0's would wait 0.64 W, inside
    that spread), so the 30 % tolerance covers the server's own overhead (dispatch and thread
    wake-up, tenths of a millisecond on a shared machine) rather than the luck of the draw. The
    theory uses the measured service times (time.sleep overshoots), via Pollaczek-Khinchine,
    W = lambda E[S^2] / (2 (1 - rho)), which is M/D/1's formula when S is constant.
    """
    service_s, rho, requests = 0.004, 0.5, 500
    qps = rho / service_s
    schedule = make_schedule(qps, requests / qps * 2, requests, ONE_ITEM, 1, seed=1)
    assert schedule.requests == requests
    nominal_w = rho * service_s / (2 * (1 - rho))
    ideal_nominal = lindley_waits(schedule.arrival_s, np.full(requests, service_s))
    assert ideal_nominal.mean() == pytest.approx(nominal_w, rel=0.05)  # a typical schedule

    record = serve(schedule, fixed_service_time(service_s))
    waits = record.first_start_s - schedule.arrival_s
    measured_service = record.task_end_s - record.task_start_s
    assert not np.isnan(waits).any()
    assert abs(np.median(measured_service) - service_s) < 0.5e-3

    # A single FIFO server that never idles while work is queued: each request starts at its
    # arrival or at the end of the one before, whichever is later, give or take the dispatch and
    # thread wake-up delay (tenths of a millisecond on a shared machine).
    assert np.all(np.diff(record.task_start_s) > 0) and np.all(waits >= 0)
    ready = np.maximum(schedule.arrival_s, np.concatenate([[0.0], record.task_end_s[:-1]]))
    delay = record.task_start_s - ready
    assert np.all(delay >= 0) and np.median(delay) < 0.5e-3

    actual_rho = qps * measured_service.mean()
    theory = qps * np.mean(measured_service**2) / (2 * (1 - actual_rho))
    assert waits.mean() == pytest.approx(theory, rel=0.3)
    summary = summarize(record)
    assert summary.unfinished == 0 and summary.completed == requests
    assert summary.queueing_mean_ms == pytest.approx(waits.mean() * 1e3)


def test_overload_shows_growing_latency_not_a_lower_offered_rate(fixed_service_time):
    """Offered 2x capacity: arrivals stay on schedule, latency grows linearly at slope rho - 1."""
    service_s, qps = 0.005, 400.0
    schedule = make_schedule(qps, 0.75, 10_000, ONE_ITEM, 1, seed=1)
    record = serve(schedule, fixed_service_time(service_s))
    summary = summarize(record)
    assert summary.unfinished == 0
    # The dispatcher queued every request at its scheduled time, not when the server was free.
    lag = record.enqueue_s - schedule.arrival_s
    assert np.median(lag) < 1e-3
    assert summary.offered_qps == pytest.approx(schedule.requests / 0.75)
    # Completions come at the server's own rate, 1 / S.
    measured_service = np.mean(record.task_end_s - record.task_start_s)
    assert summary.achieved_qps == pytest.approx(1 / measured_service, rel=0.1)
    assert summary.achieved_qps < 0.6 * summary.offered_qps
    # Request i completes at about i * S and arrived at about i / qps: latency = (rho - 1) * t.
    latency = record.latency_s
    slope = np.polyfit(schedule.arrival_s, latency, 1)[0]
    rho = schedule.requests / 0.75 * measured_service
    assert slope == pytest.approx(rho - 1, rel=0.2)
    quarter = schedule.requests // 4
    assert latency[-quarter:].mean() > 5 * latency[:quarter].mean()


def test_sub_batches_spread_over_workers_and_a_query_ends_with_its_last(fixed_service_time):
    sizes = QuerySizeDistribution.parse("fixed:7")
    schedule = make_schedule(20.0, 0.5, 10_000, sizes, 7, seed=2)
    model = fixed_service_time(0.01)
    record = serve(schedule, model, workers=2, sub_batch=4)
    # 7 items: sub-batches of 4 and 3 items, the 3 padded to 4; 1/7 padding.
    assert sorted(set(model.calls)) == [4]
    assert len(model.calls) == 2 * schedule.requests
    summary = summarize(record)
    assert summary.padding_overhead == pytest.approx(1 / 7)
    ends = record.task_end_s.reshape(-1, 2)
    np.testing.assert_array_equal(record.completion_s, ends.max(axis=1))
    # At 20 qps and 10 ms per sub-batch, the two sub-batches of a query mostly run side by side.
    starts = record.task_start_s.reshape(-1, 2)
    overlapping = np.mean(np.abs(starts[:, 0] - starts[:, 1]) < 0.005)
    assert overlapping > 0.8


def test_drain_timeout_bounds_the_run_and_reports_unfinished(fixed_service_time):
    schedule = make_schedule(100.0, 0.5, 10_000, ONE_ITEM, 1, seed=3)  # 5 s of work
    record = serve(schedule, fixed_service_time(0.1), drain_timeout_s=0.3)
    summary = summarize(record)
    assert record.stop_s < 0.5 + 0.3 + 0.2
    assert (
        0 < summary.completed < 12 and summary.unfinished == schedule.requests - summary.completed
    )
    assert not summary.meets("p95", 1e9)
    # Unfinished requests enter the percentiles with a lower bound: the time until the stop.
    first_unfinished = np.flatnonzero(np.isnan(record.latency_s))[0]
    lower_bound = record.stop_s - schedule.arrival_s[first_unfinished]
    assert summary.latency_max_ms >= lower_bound * 1e3 - 1e-6
    assert not worker_threads()


def test_an_empty_schedule_is_summarized_and_meets_no_target(fixed_service_time):
    schedule = make_schedule(0.05, 1.0, 10, ONE_ITEM, 1, seed=0)
    assert schedule.requests == 0
    summary = summarize(serve(schedule, fixed_service_time(0.001)))
    assert summary.completed == summary.unfinished == 0 and summary.padding_overhead == 0.0
    assert not summary.meets("p95", 1e9)
    assert not worker_threads()


def test_ctrl_c_stops_the_workers(fixed_service_time):
    schedule = make_schedule(50.0, 30.0, 10_000, ONE_ITEM, 1, seed=4)
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        serve(schedule, fixed_service_time(0.005), workers=3)
    timer.join()
    assert not worker_threads()


def test_a_failing_model_stops_the_run_and_raises():
    def broken(padded_size):
        raise RuntimeError(f"model failed at batch {padded_size}")

    schedule = make_schedule(100.0, 10.0, 10_000, ONE_ITEM, 1, seed=5)
    with pytest.raises(RuntimeError, match="model failed at batch 1"):
        serve(schedule, broken, workers=2)
    assert not worker_threads()


def test_machine_cpu_counts_this_process_too():
    """The machine-wide busy time grows at least as fast as this process's own CPU time."""
    machine, process = machine_busy_cpu_s(), time.process_time()
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:
        pass
    used = time.process_time() - process
    # /proc/stat counts in ticks of 10 ms: allow two.
    assert machine_busy_cpu_s() - machine >= used - 0.02
