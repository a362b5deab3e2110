"""Reading the results.json files of earlier runs, with errors that name the file and the field.

    run = load_run("runs/latency/rmc2-20261128-101500")   # a run folder or its results.json
    run.benchmark                                          # "latency"
    run.get("results", 0, "mode")                          # a field, by its path
    run.number("results", 0, "p50_ms")                     # a number, checked
    runs = find_runs(["runs/latency", "runs/breakdown"])   # every run below these folders

No plotting here (and no matplotlib): the figure modules read runs through `RunResults`, so a
results file from another binary, or one that lacks a field, fails with a message that names the
file, the benchmark and the missing field.
"""

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence

from recjax.reporting.logdir import RESULTS_FILE

Key = str | int


class ResultsError(ValueError):
    """A results.json that cannot be drawn: unreadable, from another binary, or missing a field."""


def _describe(path: Sequence[Key]) -> str:
    """("results", 2, "p99_ms") -> "results[2].p99_ms"."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


@dataclasses.dataclass(frozen=True)
class RunResults:
    """One run's results.json, as written by `RunReporter.write_results`.

    Attributes:
      path: the results.json file (absolute).
      data: its contents: the header (benchmark, command, model, ...) and the binary's results.
    """

    path: str
    data: Mapping[str, object]

    @property
    def logdir(self) -> str:
        """The run's folder: where its event files are, and where its own figures go."""
        return os.path.dirname(self.path)

    @property
    def benchmark(self) -> str:
        return self.get("benchmark")

    @property
    def model(self) -> str:
        """The preset's name; "machine" for a run without a model."""
        return self.data.get("model") or "machine"

    def get(self, *path: Key) -> object:
        """The field at `path` (dict keys and list indices); ResultsError naming it if absent."""
        value: object = self.data
        for depth, key in enumerate(path):
            if isinstance(key, int):
                present = isinstance(value, list) and -len(value) <= key < len(value)
            else:
                present = isinstance(value, dict) and key in value
            if not present:
                raise ResultsError(
                    f"{self.path}: this {self.data.get('benchmark', 'unknown')!r} results file "
                    f"has no field {_describe(path[: depth + 1])!r} (needed: "
                    f"{_describe(path)!r}); was it written by an older or newer recjax?"
                )
            value = value[key]
        return value

    def number(self, *path: Key) -> float:
        """The number at `path` (NaN stays NaN); ResultsError naming it if absent or no number."""
        value = self.get(*path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ResultsError(
                f"{self.path}: field {_describe(path)!r} should be a number; got {value!r}."
            )
        return float(value)

    def length(self, *path: Key) -> int:
        """The length of the list at `path`; ResultsError naming it if absent or not a list."""
        items = self.get(*path)
        if not isinstance(items, list):
            raise ResultsError(
                f"{self.path}: field {_describe(path)!r} should be a list; got {items!r:.60}."
            )
        return len(items)

    def require(self, benchmark: str) -> None:
        """Raises ResultsError unless this run was written by benchmarks.<benchmark>."""
        if self.benchmark != benchmark:
            raise ResultsError(
                f"{self.path}: a results file of benchmarks.{self.benchmark}, not of "
                f"benchmarks.{benchmark}; the {benchmark} figure draws only "
                f"benchmarks.{benchmark} runs."
            )


def load_run(path: str) -> RunResults:
    """The run whose folder (or results.json) is `path`; ResultsError naming a file unusable."""
    file = os.path.join(path, RESULTS_FILE) if os.path.isdir(path) else path
    file = os.path.abspath(file)
    try:
        with open(file) as handle:
            data = json.load(handle)
    except FileNotFoundError as error:
        raise ResultsError(f"{file}: no such results file.") from error
    except (OSError, json.JSONDecodeError) as error:
        raise ResultsError(f"{file}: not a readable JSON results file ({error}).") from error
    if not isinstance(data, dict) or not isinstance(data.get("benchmark"), str):
        raise ResultsError(
            f"{file}: not a recjax results file: it has no 'benchmark' field naming the binary "
            "that wrote it."
        )
    return RunResults(path=file, data=data)


def find_runs(paths: Iterable[str]) -> list[RunResults]:
    """Every run at or below each of `paths` (run folders, folders of runs, results.json files),
    each once, in path order. Raises ResultsError naming a path that does not exist or holds no
    run."""
    files: dict[str, None] = {}
    for path in paths:
        if not os.path.exists(path):
            raise ResultsError(f"{path}: no such folder or file.")
        if os.path.isfile(path):
            files[os.path.realpath(path)] = None
            continue
        found = sorted(
            os.path.join(folder, RESULTS_FILE)
            for folder, _, names in os.walk(path)
            if RESULTS_FILE in names
        )
        if not found:
            raise ResultsError(f"{path}: holds no {RESULTS_FILE} (no run) at any depth.")
        files.update((os.path.realpath(file), None) for file in found)
    return [load_run(file) for file in files]


def panel_titles(runs: Sequence[RunResults]) -> list[str]:
    """Each run's preset name; where runs share a preset, with each one's folder (relative to the
    folder they share) to tell them apart."""
    folders: dict[str, list[str]] = {}
    for run in runs:
        folders.setdefault(run.model, []).append(run.logdir)
    titles = []
    for run in runs:
        same = folders[run.model]
        if len(same) == 1:
            titles.append(run.model)
        else:
            shared = os.path.commonpath(same)
            titles.append(f"{run.model} ({os.path.relpath(run.logdir, shared)})")
    return titles
