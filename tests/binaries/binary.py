"""Running a benchmark binary the way a user does: `python -m benchmarks.<name>` from the repo."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_binary(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs benchmarks.<name> with `args` and returns its exit code and captured output."""
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
