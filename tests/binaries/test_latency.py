"""The latency binary end to end on a tiny preset, and its refusals of bad flags."""

import json
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from tests.binaries.binary import run_binary

FAST = [
    "--min_iterations=3",
    "--min_seconds=0",
    "--max_seconds=0.5",
    "--warmup=1",
    "--eager_min_iterations=2",
    "--eager_max_seconds=0.5",
]


def run_latency(*args):
    return run_binary("latency", *args)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("latency")
    result = run_latency("--model=rmc1-tiny", "--batch_sizes=1,4", f"--logdir={logdir}", *FAST)
    assert result.returncode == 0, result.stderr
    return logdir, result.stdout


def test_prints_table_and_paths(tiny_run):
    logdir, stdout = tiny_run
    assert "rmc1-tiny: bottom 128-64-32, top 288-256-64-1" in stdout
    rows = [line.split() for line in stdout.splitlines() if line.startswith(("jit ", "eager "))]
    assert [(row[0], row[1]) for row in rows] == [
        ("jit", "1"),
        ("jit", "4"),
        ("eager", "1"),
        ("eager", "4"),
    ]
    assert f"results:     {logdir}/results.json" in stdout
    assert f"tensorboard --logdir {logdir}" in stdout


def test_results_json_is_consistent(tiny_run):
    logdir, _ = tiny_run
    results = json.loads((logdir / "results.json").read_text())
    assert results["model"] == "rmc1-tiny"
    assert results["fingerprint"]["jax_backend"] == "cpu"
    by_key = {(r["mode"], r["batch_size"]): r for r in results["results"]}
    assert set(by_key) == {("jit", 1), ("jit", 4), ("eager", 1), ("eager", 4)}
    for (mode, batch_size), row in by_key.items():
        latencies = np.asarray(row["latencies_ms"])
        assert row["iterations"] == latencies.size >= 1
        assert row["p50_ms"] == pytest.approx(np.percentile(latencies, 50), rel=1e-4)
        expected_throughput = batch_size / (latencies.mean() / 1e3)
        assert row["throughput_samples_per_s"] == pytest.approx(expected_throughput, rel=1e-4)
        assert (row["compile_seconds"] is not None) == (mode == "jit")
    assert by_key[("eager", 4)]["max_abs_difference_from_jit"] < 1e-5


def test_event_files_hold_the_expected_tags_and_values(tiny_run):
    logdir, _ = tiny_run
    results = json.loads((logdir / "results.json").read_text())
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags()["tensors"])
    for mode in ("jit", "eager"):
        for name in ("p50", "p90", "p99", "mean"):
            assert f"{mode}/latency_ms/{name}" in tags
        assert f"{mode}/throughput_samples_per_s" in tags
        assert f"{mode}/latency_ms" in tags  # the histogram
    assert {
        "jit/compile_seconds",
        "speedup/jit_over_eager_p50",
        "_hparams_/session_start_info",
    } <= tags
    assert {"config", "fingerprint", "results"} <= tags
    fingerprint_text = tensor_util.make_ndarray(accumulator.Tensors("fingerprint")[0].tensor_proto)
    assert b"cpu_model" in fingerprint_text.item()

    p99 = accumulator.Tensors("jit/latency_ms/p99")
    assert [event.step for event in p99] == [1, 4]
    expected = {r["batch_size"]: r["p99_ms"] for r in results["results"] if r["mode"] == "jit"}
    for event in p99:
        value = float(tensor_util.make_ndarray(event.tensor_proto))
        assert value == pytest.approx(expected[event.step], rel=1e-6)

    histogram = accumulator.Tensors("eager/latency_ms")[0]
    buckets = tensor_util.make_ndarray(histogram.tensor_proto)  # [buckets, 3]: left, right, count
    eager_1 = next(r for r in results["results"] if r["mode"] == "eager" and r["batch_size"] == 1)
    assert buckets[:, 2].sum() == eager_1["iterations"]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--batch_sizes=0,4", "--batch_sizes must be a non-empty comma-separated list of positive"),
        ("--batch_sizes=", "--batch_sizes must be"),
        ("--modes=jit,compiled", "--modes must be a non-empty comma-separated subset"),
        ("--model=rmc9", "rmc1-tiny"),
    ],
)
def test_bad_flags_fail_before_building(flag, message):
    result = run_latency(flag)
    assert result.returncode != 0
    assert message in result.stderr
    assert "built the model" not in result.stdout


def test_unwritable_logdir_fails_before_building(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_latency("--model=rmc2-tiny", f"--logdir={blocker}/run")
    assert result.returncode != 0
    assert "is not writable" in result.stderr
    assert "built the model" not in result.stdout


def test_torch_mode_runs_the_same_weights_and_records_threads(tmp_path):
    torch = pytest.importorskip(
        "torch", reason="torch is an optional extra: pip install -e '.[torch]'"
    )
    result = run_latency(
        "--model=rmc1-tiny", "--batch_sizes=2", "--modes=jit,torch", f"--logdir={tmp_path}", *FAST
    )
    assert result.returncode == 0, result.stderr
    cores = len(os.sched_getaffinity(0))
    assert (
        f"threads: {cores} usable cores; XLA uses all of them; torch {torch.__version__} "
        f"set_num_threads({cores}), set_num_interop_threads({cores})"
    ) in result.stdout
    rows = [
        line.split() for line in result.stdout.splitlines() if line.startswith(("jit ", "torch "))
    ]
    assert [(row[0], row[1]) for row in rows] == [("jit", "2"), ("torch", "2")]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["thread_counts"] == {
        "usable_cores": cores,
        "torch_version": torch.__version__,
        "torch_num_threads": cores,
        "torch_num_interop_threads": cores,
    }
    by_mode = {r["mode"]: r for r in results["results"]}
    assert by_mode["torch"]["compile_seconds"] is None
    assert by_mode["torch"]["max_abs_difference_from_jit"] < 1e-5
    ratio = by_mode["torch"]["p50_ms"] / by_mode["jit"]["p50_ms"]
    assert rows[0][-1] == f"{ratio:.2f}x"  # the jit row's "torch/jit" column


def test_override_changes_the_architecture_and_a_bad_one_is_named(tmp_path):
    result = run_latency(
        "--model=rmc1-tiny",
        "--override=top_mlp=64,1",
        "--override=interaction=dot",
        "--batch_sizes=2",
        "--modes=jit",
        f"--logdir={tmp_path}",
        *FAST,
    )
    assert result.returncode == 0, result.stderr
    # dot over 8 features and the 32-wide bottom output: 32 + 9 * 8 / 2 = 68 inputs to the top MLP
    assert "rmc1-tiny: bottom 128-64-32, top 68-64-1" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["top_mlp"] == [64, 1] and results["config"]["interaction"] == "dot"
    bad = run_latency("--model=rmc1-tiny", "--override=top_mlp=64,2")
    assert bad.returncode != 0
    assert "the top MLP must end in one unit" in bad.stderr
    assert "built the model" not in bad.stdout


def test_a_second_run_into_the_same_logdir_keeps_the_first(tmp_path):
    args = ("--model=rmc1-tiny", "--batch_sizes=1", "--modes=jit", f"--logdir={tmp_path}", *FAST)
    assert run_latency(*args).returncode == 0
    first = (tmp_path / "results.json").read_text()
    second = run_latency(*args)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "results.json").read_text() == first
    (inner,) = [path for path in tmp_path.iterdir() if path.name.startswith("run-")]
    assert (inner / "results.json").exists()
    assert f"results:     {inner}/results.json" in second.stdout
