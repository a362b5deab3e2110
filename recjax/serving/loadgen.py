"""The runs behind `benchmarks.loadgen`: one open-loop run per sub-batch size, or a QPS search.

Without a latency target, every `--sub_batch` value gets one run at `--qps`. With one, every
value gets a search for the highest offered rate meeting it (`recjax.serving.search`), and the
best configuration is the value with the highest such rate. Every run of a (model, settings)
replays the same seeded schedule, scaled to its rate: the same query sizes in the same order and
the same exponential draws divided by the rate (common random numbers, so two rates differ by the
rate, not by the luck of the draw).
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from recjax.reporting.summary_writer import SummaryWriter
from recjax.serving.query_sizes import QuerySizeDistribution
from recjax.serving.run_summary import PERCENTILES, RunSummary, summarize
from recjax.serving.search import SearchResult, search_max_qps
from recjax.serving.server import RunRecord, ServeFn, make_schedule, serve_schedule
from recjax.serving.sub_batches import compiled_sizes


@dataclasses.dataclass(frozen=True)
class LoadSettings:
    """One invocation's settings; __post_init__ rejects bad values, naming them."""

    qps: float
    duration_s: float
    max_requests: int
    query_sizes: QuerySizeDistribution
    max_query_size: int
    sub_batches: tuple[int, ...]
    workers: int
    drain_timeout_s: float
    seed: int
    target_percentile: str | None = None
    target_ms: float | None = None
    search_resolution: float = 0.05
    search_max_runs: int = 10

    def __post_init__(self):
        problems = []
        if not self.qps > 0:
            problems.append(f"--qps must be > 0; got {self.qps}.")
        if not self.duration_s > 0:
            problems.append(f"--duration_s must be > 0; got {self.duration_s}.")
        elif not self.qps * self.duration_s >= 1:
            problems.append(
                f"--qps x --duration_s must be >= 1 (one expected request); got {self.qps} x "
                f"{self.duration_s}."
            )
        if self.max_requests < 1:
            problems.append(f"--max_requests must be >= 1; got {self.max_requests}.")
        if self.max_query_size < 1:
            problems.append(f"--max_query_size must be >= 1; got {self.max_query_size}.")
        if not self.sub_batches or min(self.sub_batches) < 1:
            problems.append(
                f"--sub_batch must be a non-empty list of integers >= 1; got "
                f"{list(self.sub_batches)}."
            )
        if self.workers < 1:
            problems.append(f"--workers must be >= 1; got {self.workers}.")
        if not self.drain_timeout_s > 0:
            problems.append(f"--drain_timeout_s must be > 0; got {self.drain_timeout_s}.")
        if (self.target_percentile is None) != (self.target_ms is None):
            problems.append("A latency target needs both a percentile and a value.")
        if self.target_percentile is not None and self.target_percentile not in PERCENTILES:
            problems.append(
                f"Target percentile must be one of {PERCENTILES}; got {self.target_percentile}."
            )
        if self.target_ms is not None and not self.target_ms > 0:
            problems.append(f"The latency target must be > 0 ms; got {self.target_ms}.")
        if not 0 < self.search_resolution < 1:
            problems.append(
                f"--search_resolution must lie in (0, 1); got {self.search_resolution}."
            )
        if self.search_max_runs < 2:
            problems.append(f"--search_max_runs must be >= 2; got {self.search_max_runs}.")
        if problems:
            raise ValueError(" ".join(problems))

    @property
    def searching(self) -> bool:
        return self.target_ms is not None

    def compiled_sizes(self) -> tuple[int, ...]:
        """Every batch size any of the sub-batch sizes pads to."""
        sizes = set()
        for sub_batch in self.sub_batches:
            sizes.update(compiled_sizes(sub_batch, self.max_query_size))
        return tuple(sorted(sizes))


@dataclasses.dataclass(frozen=True)
class Point:
    """One run: its summary and its record (per-request times)."""

    summary: RunSummary
    record: RunRecord

    def to_json(self) -> dict[str, object]:
        latency = self.record.latency_s
        return {
            **dataclasses.asdict(self.summary),
            "latencies_ms": [None if np.isnan(v) else round(v * 1e3, 4) for v in latency.tolist()],
        }


def run_point(
    serve: ServeFn,
    settings: LoadSettings,
    sub_batch: int,
    qps: float,
    progress: Callable[[str], None] = print,
) -> Point:
    """One bounded open-loop run of the seeded schedule at `qps`."""
    schedule = make_schedule(
        qps,
        settings.duration_s,
        settings.max_requests,
        settings.query_sizes,
        settings.max_query_size,
        settings.seed,
    )
    progress(
        f"run: sub_batch {sub_batch}, {qps:.2f} qps offered, {schedule.requests} requests over "
        f"{settings.duration_s:g} s ..."
    )
    record = serve_schedule(
        schedule,
        serve,
        workers=settings.workers,
        sub_batch=sub_batch,
        compiled_sizes=settings.compiled_sizes(),
        drain_timeout_s=settings.drain_timeout_s,
        progress=progress,
    )
    summary = summarize(record)
    verdict = ""
    if settings.searching:
        met = summary.meets(settings.target_percentile, settings.target_ms)
        verdict = f", {'meets' if met else 'misses'} {settings.target_percentile} <= "
        verdict += f"{settings.target_ms:g} ms"
    unfinished = f", {summary.unfinished} unfinished" if summary.unfinished else ""
    progress(
        f"     achieved {summary.achieved_qps:.2f} qps, p50 {summary.latency_p50_ms:.1f} ms, "
        f"p95 {summary.latency_p95_ms:.1f} ms, p99 {summary.latency_p99_ms:.1f} ms"
        f"{unfinished}{verdict}; cores used: this process {summary.process_cores_used:.2f}, "
        f"other processes {summary.other_processes_cores_used:.2f}"
    )
    return Point(summary, record)


def run_all(
    serve: ServeFn, settings: LoadSettings, progress: Callable[[str], None] = print
) -> tuple[list[Point], dict[int, SearchResult]]:
    """Every run of the invocation, and the search result per sub-batch size when searching."""
    points: list[Point] = []
    searches: dict[int, SearchResult] = {}
    for sub_batch in settings.sub_batches:
        if not settings.searching:
            points.append(run_point(serve, settings, sub_batch, settings.qps, progress))
            continue
        by_summary: dict[int, Point] = {}

        def run_at(qps: float, sub_batch=sub_batch, by_summary=by_summary) -> RunSummary:
            point = run_point(serve, settings, sub_batch, qps, progress)
            by_summary[id(point.summary)] = point
            return point.summary

        searches[sub_batch] = search_max_qps(
            run_at,
            lambda run: run.meets(settings.target_percentile, settings.target_ms),
            start_qps=settings.qps,
            resolution=settings.search_resolution,
            max_runs=settings.search_max_runs,
            barely_queued=barely_queued,
            min_qps=1.0 / settings.duration_s,  # below it, a run expects less than one request
        )
        points.extend(by_summary[id(run)] for run in searches[sub_batch].runs)
    return points, searches


# A run whose mean queueing time is under this fraction of its mean latency barely queued.
BARELY_QUEUED_FRACTION = 0.1


def barely_queued(run: RunSummary) -> bool:
    """Nearly all of the run's latency was service: a lower rate would not lower it much."""
    return (
        run.unfinished == 0 and run.queueing_mean_ms < BARELY_QUEUED_FRACTION * run.latency_mean_ms
    )


def best_configuration(searches: dict[int, SearchResult]) -> RunSummary | None:
    """The run with the highest rate meeting the target over all sub-batch sizes."""
    found = [result.best for result in searches.values() if result.best is not None]
    return max(found, key=lambda run: run.qps) if found else None


def format_table(points: list[Point], settings: LoadSettings) -> str:
    """One row per run, ordered by sub-batch size and offered rate."""
    header = (
        f"{'sub_batch':>9}{'qps':>9}{'offered':>9}{'achieved':>9}{'items/s':>10}{'p50 ms':>9}"
        f"{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'queue ms':>9}{'serve ms':>9}{'pad %':>7}"
        f"{'unfin':>6}{'others':>7}"
    )
    if settings.searching:
        header += f"{'meets':>7}"
    lines = [header, "-" * len(header)]
    for point in sorted(points, key=lambda p: (p.summary.sub_batch, p.summary.qps)):
        s = point.summary
        line = (
            f"{s.sub_batch:>9}{s.qps:>9.2f}{s.offered_qps:>9.2f}{s.achieved_qps:>9.2f}"
            f"{s.items_per_s:>10,.0f}{s.latency_p50_ms:>9.1f}{s.latency_p95_ms:>9.1f}"
            f"{s.latency_p99_ms:>9.1f}{s.latency_max_ms:>9.1f}{s.queueing_mean_ms:>9.1f}"
            f"{s.service_mean_ms:>9.1f}{s.padding_overhead * 100:>7.1f}{s.unfinished:>6}"
            f"{s.other_processes_cores_used:>7.2f}"
        )
        if settings.searching:
            met = s.meets(settings.target_percentile, settings.target_ms)
            line += f"{'yes' if met else 'no':>7}"
        lines.append(line)
    return "\n".join(lines)


def format_search(searches: dict[int, SearchResult], settings: LoadSettings) -> str:
    """Per sub-batch size: the highest rate meeting the target and the next step up; the best."""
    target = f"{settings.target_percentile} <= {settings.target_ms:g} ms"
    lines = []
    for sub_batch, result in searches.items():
        if result.best is None:
            lowest = min(result.runs, key=lambda run: run.qps)
            reason = (
                f"at {lowest.qps:.2f} qps requests barely queued (mean "
                f"{lowest.queueing_mean_ms:.1f} of {lowest.latency_mean_ms:.1f} ms) and still "
                "missed: the service time alone misses the target"
                if result.service_bound
                else f"the lowest rate tried, {lowest.qps:.2f} qps, missed"
            )
            lines.append(f"sub_batch {sub_batch}: no run met {target}; {reason}.")
            continue
        best, up, percentile = result.best, result.next_step_up, settings.target_percentile
        if up is not None:
            unfinished = f", {up.unfinished} unfinished" if up.unfinished else ""
            step = (
                f"next step up {up.qps:.2f} qps missed ({percentile} "
                f"{up.latency_ms(percentile):.1f} ms{unfinished})"
            )
        else:
            step = "no higher rate was tried (the run limit was reached while doubling)"
        converged = (
            f"within {settings.search_resolution:.0%}"
            if result.converged
            else "NOT converged (run limit)"
        )
        lines.append(
            f"sub_batch {sub_batch}: {best.qps:.2f} qps meets {target} "
            f"({percentile} {best.latency_ms(percentile):.1f} ms, "
            f"{best.items_per_s:,.0f} items/s); {step}; {converged}, {len(result.runs)} runs"
        )
    best = best_configuration(searches)
    if best is not None:
        lines.append(
            f"best: sub_batch {best.sub_batch}, {best.workers} workers: {best.qps:.2f} qps "
            f"({best.items_per_s:,.0f} items/s) at {target}"
        )
    return "\n".join(lines)


def format_generator_cpu(points: list[Point]) -> str:
    """How much CPU the load generator itself took, next to the whole process."""
    dispatcher = max(p.summary.dispatcher_cpu_fraction for p in points)
    workers = max(p.summary.worker_thread_cpu_fraction for p in points)
    cores = [p.summary.process_cores_used for p in points]
    lag_p99 = max(p.summary.dispatch_lag_p99_ms for p in points)
    lag = max(p.summary.dispatch_lag_max_ms for p in points)
    others = [p.summary.other_processes_cores_used for p in points]
    return (
        f"generator CPU: dispatcher thread at most {dispatcher:.1%} of one core; worker threads' "
        f"own CPU at most {workers:.1%}; the whole process used {min(cores):.2f}-{max(cores):.2f} "
        f"cores, other processes {min(others):.2f}-{max(others):.2f} cores (column 'others'); "
        f"dispatch lag behind schedule: p99 at most {lag_p99:.2f} ms, max {lag:.2f} ms"
    )


def _step(qps: float) -> int:
    """TensorBoard steps are integers: the offered rate rounded to the nearest query per second."""
    return int(round(qps))


def write_summaries(
    writer: SummaryWriter,
    points: list[Point],
    searches: dict[int, SearchResult],
    hparams: dict[str, bool | int | float | str],
    texts: dict[str, str],
    trial_id: str,
) -> None:
    """Per sub-batch size, latency and rates against the offered rate (the step); see README."""
    for point in sorted(points, key=lambda p: p.summary.qps):
        s = point.summary
        prefix, step = f"sub_batch_{s.sub_batch}", _step(s.qps)
        for name in (*PERCENTILES, "max", "mean"):
            writer.scalar(f"{prefix}/latency_ms/{name}", getattr(s, f"latency_{name}_ms"), step)
        writer.scalar(f"{prefix}/achieved_qps", s.achieved_qps, step)
        writer.scalar(f"{prefix}/items_per_s", s.items_per_s, step)
        writer.scalar(f"{prefix}/queueing_ms/mean", s.queueing_mean_ms, step)
        writer.scalar(f"{prefix}/service_ms/mean", s.service_mean_ms, step)
        writer.scalar(f"{prefix}/padding_overhead", s.padding_overhead, step)
        writer.scalar(f"{prefix}/other_processes_cores_used", s.other_processes_cores_used, step)
        latency = point.record.latency_s
        finished = latency[~np.isnan(latency)]
        if finished.size:
            writer.histogram(f"{prefix}/latency_ms", finished * 1e3, step)
        if not searches:
            _write_timeline(writer, prefix, point.record)
    for sub_batch, result in searches.items():
        if result.best is not None:
            writer.scalar("search/max_qps_meeting_target", result.best.qps, sub_batch)
            writer.scalar("search/items_per_s_at_max_qps", result.best.items_per_s, sub_batch)
    writer.hparams(hparams, trial_id=trial_id)
    for tag, markdown in texts.items():
        writer.text(tag, markdown)
    writer.flush()


def _write_timeline(writer: SummaryWriter, prefix: str, record: RunRecord) -> None:
    """Mean latency of the requests arriving in each second: flat when the server keeps up,
    rising when it does not."""
    second = np.floor(record.schedule.arrival_s).astype(np.int64)
    latency = record.latency_s
    for step in np.unique(second).tolist():
        values = latency[(second == step) & ~np.isnan(latency)]
        if values.size:
            writer.scalar(f"{prefix}/timeline/latency_ms_mean", float(values.mean() * 1e3), step)
