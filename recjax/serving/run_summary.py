"""The numbers of one open-loop run: offered and achieved rates, latency tail, queueing, service."""

import dataclasses

import numpy as np

from recjax.serving.server import RunRecord

PERCENTILES = ("p50", "p95", "p99")


def _ms(values_s: np.ndarray, percentile: float) -> float:
    return float(np.percentile(values_s, percentile) * 1e3) if values_s.size else float("nan")


def _mean_ms(values_s: np.ndarray) -> float:
    return float(values_s.mean() * 1e3) if values_s.size else float("nan")


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """One run, summarized. Latencies in ms from each request's scheduled arrival.

    Unfinished requests (still queued or running when the drain timeout ended the run) enter the
    latency percentiles with the time from their arrival to the end of the run, a lower bound of
    their latency; a run with any is reported and never meets a latency target.
    """

    qps: float
    sub_batch: int
    workers: int
    duration_s: float
    requests: int
    offered_qps: float
    completed: int
    unfinished: int
    achieved_qps: float
    items_per_s: float
    mean_query_size: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    latency_mean_ms: float
    queueing_mean_ms: float
    queueing_p95_ms: float
    service_mean_ms: float
    service_p95_ms: float
    sub_batches: int
    sub_batch_service_mean_ms: float
    padding_overhead: float
    dispatch_lag_p99_ms: float
    dispatch_lag_max_ms: float
    wall_s: float
    dispatcher_cpu_fraction: float
    worker_thread_cpu_fraction: float
    process_cores_used: float
    other_processes_cores_used: float

    def latency_ms(self, percentile: str) -> float:
        return getattr(self, f"latency_{percentile}_ms")

    def meets(self, percentile: str, target_ms: float) -> bool:
        """The run had requests, all finished, and the latency percentile is at most target_ms."""
        return (
            self.requests > 0 and self.unfinished == 0 and self.latency_ms(percentile) <= target_ms
        )


def summarize(record: RunRecord) -> RunSummary:
    schedule, tasks = record.schedule, record.tasks
    latency = record.latency_s
    finished = ~np.isnan(latency)
    censored = np.where(finished, latency, record.stop_s - schedule.arrival_s)
    completion = record.completion_s[finished]
    span = float(completion.max()) if completion.size else max(record.stop_s, 1e-9)
    queueing = (record.first_start_s - schedule.arrival_s)[finished]
    service = (record.completion_s - record.first_start_s)[finished]
    sub_batch_service = (record.task_end_s - record.task_start_s)[~np.isnan(record.task_end_s)]
    lag = (record.enqueue_s - schedule.arrival_s)[~np.isnan(record.enqueue_s)]
    wall = record.wall_s
    return RunSummary(
        qps=schedule.qps,
        sub_batch=record.sub_batch,
        workers=record.workers,
        duration_s=schedule.duration_s,
        requests=schedule.requests,
        offered_qps=schedule.requests / schedule.duration_s,
        completed=int(finished.sum()),
        unfinished=int((~finished).sum()),
        achieved_qps=float(finished.sum()) / span,
        items_per_s=float(schedule.query_sizes[finished].sum()) / span,
        mean_query_size=float(schedule.query_sizes.mean()) if schedule.requests else float("nan"),
        latency_p50_ms=_ms(censored, 50),
        latency_p95_ms=_ms(censored, 95),
        latency_p99_ms=_ms(censored, 99),
        latency_max_ms=_ms(censored, 100),
        latency_mean_ms=_mean_ms(censored),
        queueing_mean_ms=_mean_ms(queueing),
        queueing_p95_ms=_ms(queueing, 95),
        service_mean_ms=_mean_ms(service),
        service_p95_ms=_ms(service, 95),
        sub_batches=int(tasks.items.size),
        sub_batch_service_mean_ms=_mean_ms(sub_batch_service),
        padding_overhead=float(tasks.padded.sum() / tasks.items.sum() - 1)
        if tasks.items.size
        else 0.0,
        dispatch_lag_p99_ms=_ms(lag, 99),
        dispatch_lag_max_ms=_ms(lag, 100),
        wall_s=record.wall_s,
        dispatcher_cpu_fraction=record.dispatcher_cpu_s / wall,
        worker_thread_cpu_fraction=record.worker_cpu_s / wall,
        process_cores_used=record.process_cpu_s / wall,
        other_processes_cores_used=max(record.machine_cpu_s - record.process_cpu_s, 0.0) / wall,
    )
