"""Running a check on simulated CPU devices: a fresh Python, since JAX counts devices once."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_on_devices(module: str, num_devices: int, *args: str, timeout: float = 600) -> dict:
    """Runs `python -m module args` with `num_devices` CPU devices; returns the JSON it prints
    on its last line of stdout."""
    env = {
        **os.environ,
        "JAX_NUM_CPU_DEVICES": str(num_devices),
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": REPO,
    }
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
