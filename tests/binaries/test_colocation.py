"""The co-location binary: a tiny run, Ctrl-C, and the memory refusal."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.binaries.binary import REPO

COMMAND = [sys.executable, "-m", "benchmarks.colocation"]


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not os.path.exists(f"/proc/{pid}")


def test_tiny_run_reports_every_instance_and_the_aggregate(tmp_path):
    result = subprocess.run(
        [
            *COMMAND,
            "--model=rmc1-tiny",
            "--instances=1,3",
            "--duration_s=0.3",
            "--rows_scale=0.5",
            "--embedding_lowering=pooling_loop",
            f"--logdir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    # The header every binary writes, for the scaled preset (1,000 rows -> 500 per table).
    assert (results["benchmark"], results["family"]) == ("colocation", "dlrm")
    assert (results["model"], results["scaled_from"]) == ("rmc1-tiny-rows0.5", "rmc1-tiny")
    assert {table["num_rows"] for table in results["config"]["tables"]} == {500}
    assert results["config"]["embedding_lowering"] == "pooling_loop"
    assert results["settings"]["embedding_lowering"] == "pooling_loop"
    assert "--rows_scale=0.5" in results["command"]
    assert results["cost"]["table_bytes"] == 8 * 500 * 32 * 4
    runs = {run["instances"]: run for run in results["results"]}
    assert set(runs) == {1, 3}
    assert runs[3]["oversubscribed"] == (len(os.sched_getaffinity(0)) < 3)
    assert [r["index"] for r in runs[3]["per_instance"]] == [0, 1, 2]
    base_p50 = runs[1]["per_instance"][0]["p50_ms"]
    for instance in runs[3]["per_instance"]:
        assert instance["slowdown_p50"] == pytest.approx(instance["p50_ms"] / base_p50)
        assert instance["fingerprint"]["cpu_affinity"] == instance["cores"]
        assert instance["fingerprint"]["xla_intra_op_threads"] == len(instance["cores"])
    aggregate = sum(i["throughput_samples_per_s"] for i in runs[3]["per_instance"])
    assert runs[3]["aggregate_throughput_samples_per_s"] == pytest.approx(aggregate)
    assert re.search(r"^\s+3\s+all\s+[\d,]+", result.stdout, re.MULTILINE)
    for instance in runs[1]["per_instance"] + runs[3]["per_instance"]:
        assert_gone(instance["pid"])


def test_ctrl_c_stops_every_instance(tmp_path):
    process = subprocess.Popen(
        [
            *COMMAND,
            "--model=rmc1-tiny",
            "--instances=2",
            "--duration_s=120",
            f"--logdir={tmp_path}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    pids = []
    for line in process.stdout:
        pids += [int(pid) for pid in re.findall(r"pid (\d+)", line)]
        if "ready; timing" in line:
            break
    assert len(pids) == 2
    start = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: SIGINT to the whole group
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - start < 60
    assert process.returncode != 0
    assert "stopped" in stderr
    for pid in pids:
        assert_gone(pid)


def test_too_many_copies_are_refused_with_a_scale_that_fits():
    result = subprocess.run(
        [*COMMAND, "--model=rmc2", "--instances=1,1000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "1000 instances of rmc2 need about" in result.stderr
    assert "--rows_scale=" in result.stderr or "use fewer instances" in result.stderr
    assert "instance 0: pid" not in result.stdout
