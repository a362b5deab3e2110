"""The XLA:CPU thread setting: applied before the backend starts, and read back after."""

import os
import subprocess
import sys

import jax
import pytest

from recjax.runtime import threads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_one_thread_gives_one_intra_op_thread_on_one_core():
    script = (
        "import os, jax\n"
        "from recjax.runtime import threads\n"
        "cores = threads.limit_threads(1)\n"
        "jax.config.update('jax_platforms', 'cpu')\n"
        "jax.numpy.ones(4).block_until_ready()\n"
        "print(cores, threads.xla_intra_op_threads(), sorted(os.sched_getaffinity(0)),"
        " os.environ['PJRT_NPROC'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    first_core = min(os.sched_getaffinity(0))
    assert result.stdout.split() == [f"[{first_core}]", "1", f"[{first_core}]", "1"]


def test_counts_outside_the_usable_cores_are_refused():
    usable = len(os.sched_getaffinity(0))
    for bad in (0, usable + 1):
        with pytest.raises(ValueError, match=f"between 1 and the {usable} cores.*got {bad}"):
            threads.limit_threads(bad)


def test_refused_once_the_backend_has_started():
    jax.devices()
    before = os.sched_getaffinity(0)
    assert threads.xla_intra_op_threads() >= 1
    with pytest.raises(RuntimeError, match="already started"):
        threads.limit_threads(1)
    assert os.sched_getaffinity(0) == before
