"""The loadgen binary end to end on a tiny preset, its search, Ctrl-C, and its refusals of bad
flags."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from tests.binaries.binary import REPO

# Queries of 3-9 items in sub-batches of at most 4: three compiled sizes (1, 2, 4), quick to build.
SMALL = ["--model=rmc1-tiny", "--query_sizes=normal:6,2", "--max_query_size=9", "--warmup_calls=1"]


def command(*args):
    return [sys.executable, "-m", "benchmarks.loadgen", *args]


def run_loadgen(*args):
    return subprocess.run(command(*args), cwd=REPO, capture_output=True, text=True, timeout=600)


def tensor_values(accumulator, tag):
    return {
        event.step: float(tensor_util.make_ndarray(event.tensor_proto))
        for event in accumulator.Tensors(tag)
    }


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("loadgen")
    result = run_loadgen(
        *SMALL,
        "--sub_batch=4,8",
        "--qps=50",
        "--duration_s=0.5",
        "--target_p99_ms=200",
        "--search_max_runs=3",
        f"--logdir={logdir}",
    )
    assert result.returncode == 0, result.stderr
    return logdir, result.stdout


def test_search_prints_table_search_and_generator_cpu(search_run):
    logdir, stdout = search_run
    assert "compiled batch sizes [1, 2, 4, 8]" in stdout
    rows = [line.split() for line in stdout.splitlines() if line.strip()[:1].isdigit()]
    # Every run meets a generous 200 ms target, so each search doubles 3 times: 50, 100, 200 qps.
    assert [(row[0], row[1]) for row in rows] == [
        (sub_batch, qps) for sub_batch in ("4", "8") for qps in ("50.00", "100.00", "200.00")
    ]
    assert "sub_batch 4: 200.00 qps meets p99 <= 200 ms" in stdout
    assert "no higher rate was tried" in stdout and "NOT converged" in stdout
    assert "best: sub_batch" in stdout
    assert "generator CPU: dispatcher thread at most" in stdout
    assert f"results:     {logdir}/results.json" in stdout


def test_results_json_is_consistent(search_run):
    logdir, _ = search_run
    results = json.loads((logdir / "results.json").read_text())
    assert results["model"] == "rmc1-tiny" and results["family"] == "dlrm"
    assert results["benchmark"] == "loadgen" and "--target_p99_ms=200" in results["command"]
    assert results["settings"]["target_percentile"] == "p99"
    assert results["searches"]["4"]["best_qps"] == 200.0
    assert len(results["runs"]) == 6
    for run in results["runs"]:
        latencies = np.asarray(run["latencies_ms"], np.float64)
        assert run["requests"] == latencies.size and run["unfinished"] == 0
        assert run["latency_p99_ms"] == pytest.approx(np.percentile(latencies, 99), abs=1e-3)
        assert run["latency_max_ms"] == pytest.approx(latencies.max(), abs=1e-3)
        assert run["offered_qps"] == pytest.approx(run["requests"] / 0.5)
        assert run["padding_overhead"] >= 0
    assert set(results["compile_seconds"]) == {"1", "2", "4", "8"}


def test_event_files_hold_the_hockey_stick(search_run):
    logdir, _ = search_run
    results = json.loads((logdir / "results.json").read_text())
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags()["tensors"])
    for sub_batch in (4, 8):
        for name in ("p50", "p95", "p99", "max", "mean"):
            assert f"sub_batch_{sub_batch}/latency_ms/{name}" in tags
        assert f"sub_batch_{sub_batch}/achieved_qps" in tags
        assert f"sub_batch_{sub_batch}/queueing_ms/mean" in tags
    assert {"search/max_qps_meeting_target", "command", "config", "fingerprint", "results"} <= tags
    p99 = tensor_values(accumulator, "sub_batch_8/latency_ms/p99")
    expected = {
        round(r["qps"]): r["latency_p99_ms"] for r in results["runs"] if r["sub_batch"] == 8
    }
    assert p99.keys() == expected.keys() == {50, 100, 200}  # the offered rate is the step
    for step, value in p99.items():
        assert value == pytest.approx(expected[step], rel=1e-6)
    assert tensor_values(accumulator, "search/max_qps_meeting_target") == {4: 200.0, 8: 200.0}


def test_single_run_writes_a_timeline(tmp_path):
    result = run_loadgen(*SMALL, "--qps=40", "--duration_s=1.5", f"--logdir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "meets" not in result.stdout
    accumulator = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    accumulator.Reload()
    timeline = tensor_values(accumulator, "sub_batch_64/timeline/latency_ms_mean")
    assert set(timeline) == {0, 1}


def test_ctrl_c_stops_a_run(tmp_path):
    process = subprocess.Popen(
        command(*SMALL, "--qps=20", "--duration_s=300", f"--logdir={tmp_path}"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("run:"):
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "interrupted: the workers were stopped" in stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--qps=0"], "--qps must be > 0; got 0.0"),
        (["--qps=-5"], "--qps must be > 0; got -5.0"),
        (["--duration_s=0"], "--duration_s must be > 0"),
        (["--qps=0.05", "--duration_s=10"], "--qps x --duration_s must be >= 1"),
        (["--max_query_size=0"], "--max_query_size must be >= 1; got 0"),
        (["--query_sizes=lognormal:5.1"], "lognormal takes MU,SIGMA"),
        (["--query_sizes=zipf:2"], "Query-size spec 'zipf:2' is malformed; expected fixed:N"),
        (["--query_sizes=quantiles:/nonexistent"], "'/nonexistent' cannot be read"),
        (["--sub_batch=0,64"], "--sub_batch must be a non-empty comma-separated list"),
        (["--workers=0"], "--workers must be >= 1; got 0"),
        (["--target_p95_ms=50", "--target_p99_ms=80"], "at most one of --target_p95_ms"),
        (["--target_p95_ms=-1"], "latency target must be > 0 ms; got -1.0"),
        (["--search_resolution=1.5"], "--search_resolution must lie in (0, 1); got 1.5"),
        (["--drain_timeout_s=0"], "--drain_timeout_s must be > 0"),
        (["--model=rmc9"], "rmc1-tiny"),
    ],
)
def test_bad_flags_fail_before_building(flags, message):
    result = run_loadgen(*flags)
    assert result.returncode != 0
    assert message in result.stderr
    assert "built the model" not in result.stdout
