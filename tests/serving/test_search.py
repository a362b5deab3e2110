"""The QPS search: against a known latency curve, and against the server with a stand-in model."""

import dataclasses

import pytest

from recjax.serving.loadgen import LoadSettings, run_point
from recjax.serving.query_sizes import QuerySizeDistribution
from recjax.serving.run_summary import RunSummary
from recjax.serving.search import search_max_qps


def fake_run(qps: float, capacity: float = 100.0, base_ms: float = 10.0) -> RunSummary:
    """A run whose p95 follows a hockey stick: base / (1 - qps / capacity), unbounded past it."""
    p95 = base_ms / (1 - qps / capacity) if qps < capacity else float("inf")
    fields = {field.name: 0.0 for field in dataclasses.fields(RunSummary)}
    fields.update(qps=qps, latency_p95_ms=p95, requests=100, unfinished=0, sub_batch=1, workers=1)
    return RunSummary(**fields)


# p95 <= 40 ms  <=>  qps <= 75 on the curve above.
TRUE_MAX_QPS = 75.0


def meets_40ms(run: RunSummary) -> bool:
    return run.meets("p95", 40.0)


@pytest.mark.parametrize("start_qps", [3.0, 74.0, 76.0, 1000.0])
def test_search_brackets_the_true_maximum_within_the_resolution(start_qps):
    calls = []

    def run_at(qps):
        calls.append(qps)
        return fake_run(qps)

    result = search_max_qps(run_at, meets_40ms, start_qps, resolution=0.02, max_runs=30)
    assert result.converged
    assert result.best.qps <= TRUE_MAX_QPS < result.next_step_up.qps
    assert result.next_step_up.qps <= result.best.qps * 1.02
    assert meets_40ms(result.best) and not meets_40ms(result.next_step_up)
    assert [run.qps for run in result.runs] == calls


def test_search_stops_at_its_run_limit():
    result = search_max_qps(fake_run, meets_40ms, 1.0, resolution=0.01, max_runs=4)
    assert len(result.runs) == 4
    assert result.next_step_up is None and not result.converged
    assert result.best.qps == 8.0  # 1, 2, 4, 8 all met the target
    result = search_max_qps(fake_run, meets_40ms, 60.0, resolution=0.001, max_runs=6)
    assert len(result.runs) == 6 and not result.converged
    assert result.best.qps <= TRUE_MAX_QPS < result.next_step_up.qps


def test_search_reports_when_nothing_meets_the_target():
    result = search_max_qps(fake_run, lambda run: run.meets("p95", 5.0), 50.0, 0.05, max_runs=6)
    assert result.best is None and not result.converged
    assert len(result.runs) == 6


def test_search_refuses_bad_settings():
    with pytest.raises(ValueError, match="0 < resolution < 1"):
        search_max_qps(fake_run, meets_40ms, 10.0, resolution=1.5, max_runs=5)


def test_search_against_the_server(fixed_service_time):
    """One worker, 4 ms per query: the search returns a rate whose run meets p95 <= 20 ms and a
    rate at most one resolution step up whose run misses it. (In steady state an ideal M/D/1
    queue's p95 latency reaches 20 ms near 175 qps, simulated; these runs are short and start
    empty, so they may pass a little higher, but never at the 250 qps capacity.)"""
    settings = LoadSettings(
        qps=100.0,
        duration_s=0.6,
        max_requests=10_000,
        query_sizes=QuerySizeDistribution.parse("fixed:1"),
        max_query_size=1,
        sub_batches=(1,),
        workers=1,
        drain_timeout_s=2.0,
        seed=0,
        target_percentile="p95",
        target_ms=20.0,
        search_resolution=0.1,
        search_max_runs=8,
    )
    model = fixed_service_time(0.004)

    def run_at(qps):
        return run_point(model, settings, 1, qps, progress=lambda _: None).summary

    result = search_max_qps(
        run_at, lambda run: run.meets("p95", 20.0), 100.0, resolution=0.1, max_runs=8
    )
    assert result.best is not None and result.next_step_up is not None
    assert result.best.meets("p95", 20.0) and result.best.latency_p95_ms <= 20.0
    assert not result.next_step_up.meets("p95", 20.0)
    assert (
        result.best.qps < result.next_step_up.qps <= result.best.qps * 1.1 or not result.converged
    )
    assert 100.0 <= result.best.qps < 250.0
