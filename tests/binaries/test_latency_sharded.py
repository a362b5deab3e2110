"""benchmarks.latency --processes: the one 2-process localhost run CI makes, and its refusals."""

import json
import os

from tests.binaries.binary import run_binary

FAST = ["--batch_sizes=4", "--min_iterations=2", "--warmup=1"]


def test_two_processes_equal_the_unsharded_model(tmp_path):
    result = run_binary(
        "latency",
        "--model=rmc1-tiny",
        "--processes=2",
        # Every table split over both processes: all-to-alls of ids and of partial sums.
        "--plan=row_wise",
        f"--logdir={tmp_path}",
        *FAST,
    )
    assert result.returncode == 0, result.stderr
    assert "sharded (2 processes, mesh 2x1, row_wise)" in result.stdout
    assert "unsharded (1 process)" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    sharded, unsharded = results["sharded"], results["unsharded"]
    assert [row["batch_size"] for row in sharded["results"]] == [4]
    assert sharded["results"][0]["iterations"] == 2  # a fixed count, the same in each process
    assert unsharded["results"][0]["max_abs_difference_from_sharded"] < 1e-6
    # Each process held half of every table (and one zero row), never a whole one.
    assert sharded["table_bytes_per_process"] == [(1 + 8 * 500) * 128] * 2
    assert sorted(os.listdir(tmp_path / "processes")) == ["process_0.log", "process_1.log"]


def test_a_plan_over_the_budget_fails_before_starting_processes(tmp_path):
    result = run_binary(
        "latency",
        "--model=rmc1-tiny",
        "--processes=2",
        "--plan=table_wise",
        "--memory_per_process=100KiB",
        f"--logdir={tmp_path}",
        *FAST,
    )
    assert result.returncode != 0
    assert "over the budget of 102,400 bytes" in result.stderr
    assert not (tmp_path / "processes").exists()


def test_sharded_batch_sizes_must_split_over_the_devices():
    result = run_binary("latency", "--model=rmc1-tiny", "--processes=4", "--batch_sizes=1,8")
    assert result.returncode != 0
    assert "positive multiples of the mesh's 4 devices" in result.stderr


def test_a_worker_needs_a_process_id_in_the_group_and_a_coordinator():
    for flags in (["--process_id=2", "--coordinator=localhost:1"], ["--process_id=0"]):
        result = run_binary("latency", "--model=rmc1-tiny", "--processes=2", *flags, *FAST)
        assert result.returncode != 0
        assert "--coordinator=HOST:PORT and --process_id in [0, --processes)" in result.stderr
