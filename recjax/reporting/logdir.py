"""Run directories: created and checked before any expensive work, never overwritten, written
without half-files."""

import datetime
import json
import os
import tempfile

RESULTS_FILE = "results.json"
EVENT_FILE_MARK = "tfevents"


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")


def default_logdir(benchmark: str, model: str) -> str:
    """runs/<benchmark>/<model>-<UTC timestamp>, relative to the working directory."""
    return os.path.join("runs", benchmark, f"{model}-{_stamp()}")


def holds_a_run(path: str) -> bool:
    """Whether `path` already holds a run's results.json or TensorBoard event files."""
    if not os.path.isdir(path):
        return False
    return any(name == RESULTS_FILE or EVENT_FILE_MARK in name for name in os.listdir(path))


def fresh_run_folder(path: str) -> str:
    """`path` itself if it holds no run, else a new folder run-<UTC timestamp>[-N] inside it."""
    if not holds_a_run(path):
        return path
    candidate = os.path.join(path, f"run-{_stamp()}")
    suffix = 2
    while os.path.exists(candidate):
        candidate = os.path.join(path, f"run-{_stamp()}-{suffix}")
        suffix += 1
    return candidate


def prepare_logdir(path: str) -> str:
    """Creates the run folder for `path` and proves it writable; returns its absolute path.

    A folder that already holds a run is never overwritten: the run goes into a fresh folder
    inside it (`fresh_run_folder`). Raises ValueError naming the folder if it cannot be written.
    """
    path = fresh_run_folder(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        raise ValueError(f"Log directory {path!r} is not writable: {error.strerror}.") from error
    return os.path.abspath(path)


def write_json(path: str, data: object) -> None:
    """Writes `data` as JSON to `path` atomically: readers see the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(
        "w", dir=directory, prefix=".tmp-", suffix=".json", delete=False
    ) as file:
        json.dump(data, file, indent=2, sort_keys=False)
        file.write("\n")
        temporary = file.name
    os.replace(temporary, path)
