"""An open-loop server: a dispatcher replays an arrival schedule into a queue; workers serve it.

    schedule (arrival times, query sizes) ──► dispatcher (this thread) ──► FIFO queue of sub-batches
                                                                               │
                          workers (threads) ◄──────────────────────────────────┘
                          each runs serve(padded size) for one sub-batch at a time

The dispatcher sleeps until each request's scheduled arrival and enqueues its sub-batches; it
never waits for the server, so a slow server shows up as latency, not as a lower offered rate.
A request's latency runs from its scheduled arrival to the end of its last sub-batch; it is split
into queueing (until its first sub-batch starts) and service (from then to its end).

Workers are threads calling one shared `serve` function: JAX releases the GIL while a compiled
XLA program runs, so threads overlap, and the parameters are shared, not copied.

Every run is bounded: by the schedule (its duration and request count), then by `drain_timeout_s`
for the requests still queued once the last has arrived. The workers are stopped and joined when
the run ends, also when it is interrupted (Ctrl-C raises KeyboardInterrupt in the dispatcher).
"""

import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from recjax.serving.arrivals import poisson_arrival_times
from recjax.serving.query_sizes import QuerySizeDistribution
from recjax.serving.sub_batches import pad_to, split_query

# Serve one sub-batch padded to this many rows, and return once its result is ready.
ServeFn = Callable[[int], object]

# The schedule starts this long after the workers are started, so they are waiting on the queue.
START_LEAD_S = 0.05
# How long a stopped worker may take to finish the sub-batch it is running before we give up on it.
WORKER_JOIN_TIMEOUT_S = 30.0


def machine_busy_cpu_s() -> float:
    """CPU seconds all processes on the machine have used since boot (NaN without /proc/stat).

    user + nice + system + irq + softirq + steal: everything but idle and I/O wait. The steal
    time (taken by the hypervisor for other machines) counts as busy, as it is lost to us.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """N requests: arrival times [N] in seconds from the start, and query sizes [N] in items."""

    arrival_s: np.ndarray
    query_sizes: np.ndarray
    qps: float
    duration_s: float

    @property
    def requests(self) -> int:
        return int(self.arrival_s.size)


def make_schedule(
    qps: float,
    duration_s: float,
    max_requests: int,
    query_sizes: QuerySizeDistribution,
    max_query_size: int,
    seed: int,
) -> Schedule:
    """A Poisson schedule and its query sizes; each from its own stream of `seed`, so changing the
    size distribution leaves the arrival times as they were."""
    arrivals = poisson_arrival_times(
        qps, duration_s, max_requests, np.random.default_rng([seed, 0])
    )
    sizes = query_sizes.sample(arrivals.size, max_query_size, np.random.default_rng([seed, 1]))
    return Schedule(arrivals, sizes, qps, duration_s)


@dataclasses.dataclass(frozen=True)
class Tasks:
    """The sub-batches of a schedule, M in all, in arrival order.

    Attributes:
      query: [M] the request each belongs to.
      items: [M] its real items.
      padded: [M] the compiled batch size it runs at (>= items).
      first: [N + 1] request q owns sub-batches first[q] to first[q + 1] - 1.
    """

    query: np.ndarray
    items: np.ndarray
    padded: np.ndarray
    first: np.ndarray

    @classmethod
    def split(cls, schedule: Schedule, sub_batch: int, compiled_sizes: tuple[int, ...]) -> "Tasks":
        pieces = [split_query(int(size), sub_batch) for size in schedule.query_sizes]
        items = np.asarray([n for piece in pieces for n in piece], np.int64)
        pad = {n: pad_to(n, compiled_sizes) for n in np.unique(items).tolist()}
        counts = np.asarray([len(piece) for piece in pieces], np.int64)
        return cls(
            query=np.repeat(np.arange(len(pieces)), counts),
            items=items,
            padded=np.asarray([pad[n] for n in items.tolist()], np.int64),
            first=np.concatenate([[0], np.cumsum(counts)]),
        )


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What happened in one run. Times in seconds from the schedule's start; NaN if it never did.

    Attributes:
      enqueue_s: [N] when the dispatcher queued each request (its scheduled arrival, or later if
        the dispatcher fell behind).
      task_start_s, task_end_s: [M] when each sub-batch started and ended service.
      stop_s: when the run ended (all served, or the drain timeout passed).
      wall_s: from starting the workers to the stop (the schedule's lead included).
      dispatcher_cpu_s: CPU time of the dispatcher thread (the load generator itself).
      worker_cpu_s: CPU time of the worker threads' own Python threads (queue handling, bookkeeping
        and whatever part of a compiled program runs on the calling thread).
      process_cpu_s: CPU time of the whole process over the run (XLA's threads included).
      machine_cpu_s: CPU time of every process on the machine over the run (NaN if unknown);
        minus process_cpu_s, what other programs took from the cores the server runs on.
    """

    schedule: Schedule
    tasks: Tasks
    workers: int
    sub_batch: int
    enqueue_s: np.ndarray
    task_start_s: np.ndarray
    task_end_s: np.ndarray
    stop_s: float
    wall_s: float
    dispatcher_cpu_s: float
    worker_cpu_s: float
    process_cpu_s: float
    machine_cpu_s: float

    @property
    def first_start_s(self) -> np.ndarray:
        """[N] when each request's first sub-batch started service."""
        return np.fmin.reduceat(self.task_start_s, self.tasks.first[:-1])

    @property
    def completion_s(self) -> np.ndarray:
        """[N] when each request's last sub-batch ended; NaN if any of them never did."""
        return np.maximum.reduceat(self.task_end_s, self.tasks.first[:-1])

    @property
    def latency_s(self) -> np.ndarray:
        """[N] completion minus scheduled arrival; NaN for unfinished requests."""
        return self.completion_s - self.schedule.arrival_s


class _WorkerPool:
    """Threads that take sub-batch indices from a queue and serve them until told to stop."""

    def __init__(self, serve: ServeFn, tasks: Tasks, workers: int, clock: Callable[[], float]):
        self._serve = serve
        self._padded = tasks.padded.tolist()
        self._clock = clock
        self.origin = 0.0
        self.queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.start_s = np.full(tasks.padded.size, np.nan)
        self.end_s = np.full(tasks.padded.size, np.nan)
        self.cpu_s = [0.0] * workers
        self.error: BaseException | None = None
        self.all_done = threading.Event()
        self._remaining = tasks.padded.size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(index,), name=f"loadgen-worker-{index}")
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.daemon = True  # a program stuck in XLA must not keep the process alive
        if self._remaining == 0:
            self.all_done.set()

    def start(self, origin: float) -> None:
        self.origin = origin
        for thread in self._threads:
            thread.start()

    def _work(self, index: int) -> None:
        cpu_start = time.thread_time()
        try:
            while not self._stop.is_set():
                task = self.queue.get()
                if task is None or self._stop.is_set():
                    return
                self.start_s[task] = self._clock() - self.origin
                self._serve(self._padded[task])
                self.end_s[task] = self._clock() - self.origin
                with self._lock:
                    self._remaining -= 1
                    if self._remaining == 0:
                        self.all_done.set()
        except BaseException as error:  # noqa: BLE001 - handed to the dispatcher, which re-raises
            self.error = error
            self.all_done.set()
        finally:
            self.cpu_s[index] = time.thread_time() - cpu_start

    def stop(self) -> None:
        """Drops the queued sub-batches and joins every worker (each finishes its current one)."""
        self._stop.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self.queue.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(WORKER_JOIN_TIMEOUT_S)


def serve_schedule(
    schedule: Schedule,
    serve: ServeFn,
    *,
    workers: int,
    sub_batch: int,
    compiled_sizes: tuple[int, ...],
    drain_timeout_s: float,
    progress: Callable[[str], None] | None = None,
    progress_interval_s: float = 5.0,
    clock: Callable[[], float] = time.perf_counter,
) -> RunRecord:
    """Replays `schedule` open-loop against `workers` threads running `serve`; returns the record.

    Raises what a worker raised (after stopping the others), and KeyboardInterrupt after stopping
    the workers if interrupted.
    """
    if workers < 1 or sub_batch < 1 or drain_timeout_s <= 0:
        raise ValueError(
            f"Need workers >= 1, sub_batch >= 1 and drain_timeout_s > 0; got {workers}, "
            f"{sub_batch}, {drain_timeout_s}."
        )
    tasks = Tasks.split(schedule, sub_batch, compiled_sizes)
    pool = _WorkerPool(serve, tasks, workers, clock)
    enqueue_s = np.full(schedule.requests, np.nan)
    arrivals = schedule.arrival_s.tolist()
    first = tasks.first.tolist()
    machine_cpu_start = machine_busy_cpu_s()
    process_cpu_start = time.process_time()
    dispatcher_cpu_start = time.thread_time()
    wall_start = clock()
    origin = wall_start + START_LEAD_S
    pool.start(origin)
    try:
        next_progress = progress_interval_s
        for request, arrival in enumerate(arrivals):
            delay = origin + arrival - clock()
            if delay > 0:
                time.sleep(delay)
            enqueue_s[request] = clock() - origin
            for task in range(first[request], first[request + 1]):
                pool.queue.put(task)
            if pool.error is not None:
                break
            if progress is not None and arrival >= next_progress:
                done = int(np.count_nonzero(~np.isnan(pool.end_s)))
                progress(
                    f"  t={arrival:5.1f} s: {request + 1} requests sent, {done}/{tasks.items.size} "
                    f"sub-batches served"
                )
                next_progress += progress_interval_s
        deadline = clock() + drain_timeout_s
        while not pool.all_done.wait(min(0.1, max(0.0, deadline - clock()))):
            if clock() >= deadline:
                break
        stop = clock()
    finally:
        pool.stop()
    if pool.error is not None:
        raise pool.error
    return RunRecord(
        schedule=schedule,
        tasks=tasks,
        workers=workers,
        sub_batch=sub_batch,
        enqueue_s=enqueue_s,
        task_start_s=pool.start_s.copy(),
        task_end_s=pool.end_s.copy(),
        stop_s=stop - origin,
        wall_s=stop - wall_start,
        dispatcher_cpu_s=time.thread_time() - dispatcher_cpu_start,
        worker_cpu_s=float(sum(pool.cpu_s)),
        process_cpu_s=time.process_time() - process_cpu_start,
        machine_cpu_s=machine_busy_cpu_s() - machine_cpu_start,
    )
