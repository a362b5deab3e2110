import json
import os

import configs
from recjax.reporting.logdir import prepare_logdir
from recjax.reporting.run_reporter import RunReporter
from recjax.reporting.summary_writer import SummaryWriter


def test_a_folder_holding_a_run_is_never_overwritten(tmp_path):
    requested = str(tmp_path / "mine")
    first = RunReporter.start("latency", configs.get("rmc1-tiny"), requested, ["latency.py"])
    assert first.logdir == requested
    first.write_results({"marker": 1})
    second = RunReporter.start("latency", configs.get("rmc1-tiny"), requested, ["latency.py"])
    assert os.path.dirname(second.logdir) == requested
    assert os.path.basename(second.logdir).startswith("run-")
    second.write_results({"marker": 2})
    third_path = prepare_logdir(requested)
    assert third_path not in (first.logdir, second.logdir)
    with open(os.path.join(requested, "results.json")) as file:
        assert json.load(file)["marker"] == 1


def test_event_files_alone_mark_a_run(tmp_path):
    with SummaryWriter(str(tmp_path)) as writer:
        writer.scalar("x", 1.0, 0)
    assert prepare_logdir(str(tmp_path)) != str(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_logdir(str(empty)) == str(empty)


def test_results_start_with_the_header(tmp_path):
    config = configs.get("rmc3-tiny")
    reporter = RunReporter.start(
        "breakdown", config, str(tmp_path / "run"), ["breakdown.py", "--model=rmc3-tiny"]
    )
    with open(reporter.write_results({"results": [1, 2]})) as file:
        results = json.load(file)
    assert results["command"].endswith("-m benchmarks.breakdown --model=rmc3-tiny")
    assert results["model"] == "rmc3-tiny" and results["family"] == "dlrm"
    assert results["cost"] == config.cost()
    assert results["config"]["bottom_mlp"] == [1024, 256, 32]
    assert results["peak_resident_bytes"] > 0 and "cpu_model" in str(results["fingerprint"])
    assert results["results"] == [1, 2]
