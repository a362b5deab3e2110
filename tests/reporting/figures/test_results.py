"""Reading results.json files: fields by path, and errors that name the file and the field."""

import json
import os

import pytest

from recjax.reporting import figures
from recjax.reporting.figures.results import ResultsError, find_runs, load_run, panel_titles
from tests.reporting.figures.recorded import as_run_folder, recorded


def test_fields_by_path_and_their_errors():
    run = recorded("latency-rmc1-tiny")
    assert (run.benchmark, run.model) == ("latency", "rmc1-tiny")
    assert run.get("results", 1, "mode") == "eager" and run.length("results") == 6
    assert run.number("latency_bound", "best", "jit", "batch_size") == 16.0
    with pytest.raises(ResultsError) as error:
        run.get("results", 9, "mode")
    assert str(error.value).startswith(f"{run.path}: this 'latency' results file has no field")
    assert "'results[9]'" in str(error.value)
    with pytest.raises(ResultsError, match=r"'results\[0\]\.p42_ms'"):
        run.number("results", 0, "p42_ms")
    with pytest.raises(ResultsError, match=r"'results\[0\]\.mode' should be a number; got 'jit'"):
        run.number("results", 0, "mode")
    with pytest.raises(ResultsError, match="'settings' should be a list"):
        run.length("settings")
    with pytest.raises(
        ResultsError, match="a results file of benchmarks.latency, not of benchmarks.loadgen"
    ):
        run.require("loadgen")


def test_load_run_names_the_file_it_cannot_use(tmp_path):
    folder = as_run_folder("breakdown-rmc2-tiny", tmp_path)
    run = load_run(folder)
    assert run.path == os.path.join(folder, "results.json") and run.logdir == folder
    assert run.benchmark == "breakdown"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ResultsError, match=f"{broken}: not a readable JSON results file"):
        load_run(str(broken))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"loss": 1.0}))
    with pytest.raises(ResultsError, match=f"{other}: not a recjax results file"):
        load_run(str(other))
    with pytest.raises(ResultsError, match="no such results file"):
        load_run(str(tmp_path / "empty"))


def test_find_runs_at_any_depth_each_once(tmp_path):
    as_run_folder("latency-rmc1-tiny", tmp_path / "latency")
    nested = as_run_folder("latency-rmc3-tiny", tmp_path / "latency" / "latency-rmc1-tiny")
    as_run_folder("embedding-rmc1-tiny", tmp_path)
    runs = find_runs([str(tmp_path / "latency"), str(tmp_path), nested])
    assert [run.model for run in runs] == ["rmc3-tiny", "rmc1-tiny", "rmc1-tiny"]
    assert [run.benchmark for run in runs] == ["latency", "latency", "embedding"]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ResultsError, match="nothing: holds no results.json"):
        find_runs([str(tmp_path / "nothing")])
    with pytest.raises(ResultsError, match="missing: no such folder or file"):
        find_runs([str(tmp_path / "missing")])


def test_panel_titles_name_the_folder_only_when_presets_repeat(tmp_path):
    first = load_run(as_run_folder("latency-rmc1-tiny", tmp_path / "a"))
    second = load_run(as_run_folder("latency-rmc1-tiny", tmp_path / "b"))
    third = load_run(as_run_folder("latency-rmc3-tiny", tmp_path / "b"))
    assert panel_titles([first, third]) == ["rmc1-tiny", "rmc3-tiny"]
    assert panel_titles([first, second, third]) == [
        "rmc1-tiny (a/latency-rmc1-tiny)",
        "rmc1-tiny (b/latency-rmc1-tiny)",
        "rmc3-tiny",
    ]


def test_every_kind_has_a_module_drawing_its_benchmark():
    pytest.importorskip("matplotlib")
    for benchmark in figures.KINDS:
        module = figures.kind_module(benchmark)
        assert benchmark == module.BENCHMARK and callable(module.draw)
    with pytest.raises(ValueError, match="No figure for benchmark 'machine'; figures exist for"):
        figures.kind_module("machine")
