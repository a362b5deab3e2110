"""How many threads XLA:CPU computes with, set before the backend starts, and read back after.

What controls it (jax/jaxlib 0.10.2, measured on a 2-core AMD EPYC):
- The PjRt CPU client sizes its intra-op thread pool (the threads named `tf_XLAEigen`, which run
  the parallel parts of matrix multiplies and fusions) once, when the backend initializes, from
  the environment variable `PJRT_NPROC` (then `NPROC`), else from the number of cores the process
  may run on (`sched_getaffinity`). PJRT_NPROC=1 turned a [1024, 2560] x [2560, 1024] matrix
  multiply from 1.9 cores of CPU time per second of wall time and 190-210 GFLOP/s into 1.0 and
  about 105 GFLOP/s.
- Restricting the process to N cores (`os.sched_setaffinity`, or `taskset`) before the backend
  initializes has the same effect on the pool size, and keeps every other thread on those cores.
- `--xla_cpu_multi_thread_eigen=false` in XLA_FLAGS changed nothing (XLA:CPU's thunk runtime does
  not read it), nor did OMP_NUM_THREADS; `--xla_force_host_platform_device_count` splits the
  CPU into several devices and leaves each device's pool as it is.

`limit_threads(n)` does both: PJRT_NPROC=n and the process pinned to the first n of its cores.
"""

import os

# Read by the PjRt CPU client when it starts (xla/pjrt/utils.cc, DefaultThreadPoolSize).
XLA_CPU_THREADS_ENVIRONMENT = "PJRT_NPROC"
# The name XLA:CPU gives the threads of its intra-op pool.
XLA_INTRA_OP_THREAD_NAME = "tf_XLAEigen"


def xla_intra_op_threads() -> int:
    """The number of live XLA:CPU intra-op pool threads of this process (0 before it starts)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                count += comm.read().strip() == XLA_INTRA_OP_THREAD_NAME
        except OSError:  # the thread ended while we looked
            continue
    return count


def pin_threads(cores: list[int]) -> None:
    """Makes XLA:CPU compute with one thread per core of `cores`, on those cores only.

    Must run before the CPU backend initializes; raises RuntimeError if it has already started.
    """
    if xla_intra_op_threads():
        raise RuntimeError(
            "The XLA CPU backend has already started; the thread count must be set before the "
            "first jax.devices() call or computation."
        )
    os.environ[XLA_CPU_THREADS_ENVIRONMENT] = str(len(cores))
    os.sched_setaffinity(0, cores)


def limit_threads(threads: int) -> list[int]:
    """Makes XLA:CPU compute with `threads` threads on `threads` cores; returns those cores.

    Must run before the CPU backend initializes (before the first `jax.devices()` or computation).
    Raises ValueError for a count outside [1, usable cores] and RuntimeError if the backend has
    already started.
    """
    usable = sorted(os.sched_getaffinity(0))
    if not 1 <= threads <= len(usable):
        raise ValueError(
            f"threads must be between 1 and the {len(usable)} cores this process may use "
            f"({usable}); got {threads}."
        )
    cores = usable[:threads]
    pin_threads(cores)
    return cores
