"""Starting the processes of one sharded run, and ending all of them together.

On real hosts, each host starts its own process with the coordinator's address and its process
id (`jax.distributed.initialize` takes them; the same command with --coordinator=host0:port and
--process_id=k on host k). On one machine, `launch_local` starts the N processes itself and
supervises them as a group:

- process 0's output goes to the terminal; every process's stderr, and the other processes'
  stdout, go to <log_dir>/process_<k>.log;
- if any process exits with an error or is killed, the others are stopped (SIGTERM to each one's
  own process group, SIGKILL after a grace period) and reaped, and `GroupFailed` names the process,
  how it ended and the end of its log: a collective never waits forever on a dead peer;
- Ctrl-C (SIGINT) or SIGTERM to the launcher stops every process the same way;
- each process asks the kernel to kill it if the launcher dies (PR_SET_PDEATHSIG, in
  `initialize`), so even a launcher killed with SIGKILL leaves no orphans.
"""

import contextlib
import ctypes
import dataclasses
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence

LAUNCHER_PID_VARIABLE = "RECJAX_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 5.0
LOG_TAIL_LINES = 15


class GroupFailed(RuntimeError):
    """One process of a group failed (or the launcher was interrupted); all were stopped."""


def die_with_launcher() -> None:
    """If started by `launch_local`: be killed when the launcher dies (Linux), and exit at once if
    it already has."""
    launcher = os.environ.get(LAUNCHER_PID_VARIABLE)
    if not launcher:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != int(launcher):
        os._exit(1)


def initialize(
    coordinator: str,
    num_processes: int,
    process_id: int,
    local_devices: int = 1,
    timeout_s: int = 120,
) -> None:
    """Joins this process to the group: CPU backend with `local_devices` devices, then
    `jax.distributed.initialize`. Call before any JAX computation."""
    die_with_launcher()
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", local_devices)
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
    )


def free_port() -> int:
    """A TCP port on localhost that is free now (for the coordinator)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class _Member:
    process_id: int
    popen: subprocess.Popen
    log_path: str


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _log_tail(path: str) -> str:
    try:
        with open(path, errors="replace") as log:
            lines = log.read().splitlines()
    except OSError:
        return ""
    return "\n".join(f"  | {line}" for line in lines[-LOG_TAIL_LINES:])


def _stop(members: Sequence[_Member], grace_s: float) -> None:
    """SIGTERM to every live member's process group, SIGKILL after `grace_s`; reaps them all."""
    for member in members:
        if member.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(member.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for member in members:
        try:
            member.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(member.popen.pid, signal.SIGKILL)
            member.popen.wait()


class _TerminateAsInterrupt:
    """While supervising, SIGTERM to the launcher ends the group like Ctrl-C."""

    def __enter__(self):
        def interrupt(signum, frame):
            raise KeyboardInterrupt

        self._previous = signal.signal(signal.SIGTERM, interrupt)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._previous)
        return False


def run_group(
    commands: Sequence[Sequence[str]],
    log_dir: str,
    *,
    env: dict[str, str] | None = None,
    poll_s: float = 0.1,
    grace_s: float = GRACE_SECONDS,
) -> None:
    """Runs one process per command (process k runs commands[k]) until all succeed.

    Raises GroupFailed, after stopping and reaping every process, when one fails or on Ctrl-C.
    """
    os.makedirs(log_dir, exist_ok=True)
    env = {**(os.environ if env is None else env), LAUNCHER_PID_VARIABLE: str(os.getpid())}
    members: list[_Member] = []
    try:
        with _TerminateAsInterrupt():
            for process_id, command in enumerate(commands):
                log_path = os.path.join(log_dir, f"process_{process_id}.log")
                log = open(log_path, "w")  # noqa: SIM115 (closed once the child has it)
                popen = subprocess.Popen(
                    list(command),
                    stdout=None if process_id == 0 else log,
                    stderr=log,
                    env=env,
                    start_new_session=True,  # its own process group: stopped as one
                )
                log.close()
                members.append(_Member(process_id, popen, log_path))
            while True:
                codes = [member.popen.poll() for member in members]
                failed = next(
                    (m for m, code in zip(members, codes, strict=True) if code not in (None, 0)),
                    None,
                )
                if failed is not None:
                    code = failed.popen.returncode
                    _stop(members, grace_s)
                    others = len(members) - 1
                    raise GroupFailed(
                        f"process {failed.process_id} (pid {failed.popen.pid}) "
                        f"{describe_exit(code)}; stopped the other {others} process"
                        f"{'es' if others != 1 else ''}. The end of its log "
                        f"({failed.log_path}):\n{_log_tail(failed.log_path)}"
                    )
                if all(code == 0 for code in codes):
                    return
                time.sleep(poll_s)
    except KeyboardInterrupt:
        _stop(members, grace_s)
        pids = ", ".join(str(member.popen.pid) for member in members)
        raise GroupFailed(
            f"interrupted: stopped all {len(members)} processes (pids {pids}); logs in {log_dir}"
        ) from None
    except BaseException:
        _stop(members, grace_s)
        raise


def launch_local(
    command_of: Callable[[int, str], Sequence[str]], num_processes: int, log_dir: str
) -> None:
    """Runs `command_of(process_id, coordinator)` for every process id on this machine, with a
    coordinator on a free localhost port; see `run_group`."""
    coordinator = f"localhost:{free_port()}"
    run_group([command_of(k, coordinator) for k in range(num_processes)], log_dir)


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("State:"):
                    return line.split()[1] != "Z"
    except FileNotFoundError:
        return False
    return True
