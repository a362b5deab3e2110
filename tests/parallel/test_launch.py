"""The launcher ends the whole group when one process dies, on Ctrl-C, and when it is killed.

Children are small Python scripts (no JAX) that write their pid to a file and then sleep or exit;
"gone" is checked with os.kill(pid, 0) and /proc (a zombie waiting to be reaped counts as gone).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from recjax.parallel import launch
from tests.parallel.simulated import REPO

SLEEPER = textwrap.dedent(
    """
    import os, sys, time
    from recjax.parallel.launch import die_with_launcher
    die_with_launcher()
    open(os.path.join(sys.argv[1], f"{os.getpid()}.pid"), "w").close()
    if sys.argv[2] == "fail":
        time.sleep(0.5)
        print("worker failing on purpose", file=sys.stderr)
        sys.exit(3)
    time.sleep(600)
    """
)


def child(pid_dir, behaviour="sleep"):
    return [sys.executable, "-c", SLEEPER, str(pid_dir), behaviour]


def written_pids(pid_dir, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(name.removesuffix(".pid")) for name in os.listdir(pid_dir)]
        if len(pids) >= count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"only {os.listdir(pid_dir)} of {count} children started")


def assert_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while launch.is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not launch.is_running(pid)
    status = f"/proc/{pid}/status"
    if os.path.exists(status):  # only as a zombie, awaiting its new parent's wait()
        with open(status) as lines:
            assert "State:\tZ" in lines.read()
    else:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", REPO)


def test_a_dying_process_ends_the_group(tmp_path, env):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    commands = [child(pid_dir), child(pid_dir, "fail"), child(pid_dir)]
    with pytest.raises(launch.GroupFailed) as failure:
        launch.run_group(commands, str(tmp_path / "logs"))
    message = str(failure.value)
    assert "process 1 (pid" in message and "exited with code 3" in message
    assert "stopped the other 2 processes" in message
    assert "worker failing on purpose" in message  # the end of its log
    pids = written_pids(pid_dir, 3)
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # stopped and reaped by the launcher
            os.kill(pid, 0)
        assert not os.path.exists(f"/proc/{pid}")


LAUNCHER = textwrap.dedent(
    """
    import sys
    from recjax.parallel import launch
    from tests.parallel.test_launch import child
    try:
        launch.run_group([child(sys.argv[1]) for _ in range(3)], sys.argv[2])
    except launch.GroupFailed as error:
        sys.exit(f"error: {error}")
    """
)


def start_launcher(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(pid_dir), str(tmp_path / "logs")],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    return launcher, written_pids(pid_dir, 3)


def test_ctrl_c_ends_the_group_with_a_message(tmp_path, env):
    launcher, pids = start_launcher(tmp_path)
    launcher.send_signal(signal.SIGINT)
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 1
    assert "interrupted: stopped all 3 processes" in stderr
    for pid in pids:
        assert_gone(pid)


def test_a_killed_launcher_leaves_no_orphans(tmp_path, env):
    launcher, pids = start_launcher(tmp_path)
    launcher.kill()  # SIGKILL: no handler runs; the kernel kills the children (PDEATHSIG)
    launcher.communicate(timeout=60)
    for pid in pids:
        assert_gone(pid)
