"""Run directories: created and checked before any expensive work, written without half-files."""

import datetime
import json
import os
import tempfile


def default_logdir(benchmark: str, model: str) -> str:
    """runs/<benchmark>/<model>-<UTC timestamp>, relative to the working directory."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", benchmark, f"{model}-{stamp}")


def prepare_logdir(path: str) -> str:
    """Creates `path` if needed and proves it writable; raises ValueError naming it otherwise."""
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
