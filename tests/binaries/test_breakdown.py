"""The breakdown binary end to end on a tiny preset."""

import glob
import json
import os

import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from recjax.bench.breakdown import REST, SHARE_SUM_TOLERANCE, STAGES
from tests.binaries.binary import run_binary

FAST = ["--min_iterations=3", "--min_seconds=0", "--max_seconds=0.3", "--warmup=1"]


def run_breakdown(*args):
    return run_binary("breakdown", *args)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("breakdown")
    result = run_breakdown(
        "--model=rmc2-tiny", "--batch_sizes=1,8", "--profile", f"--logdir={logdir}", *FAST
    )
    assert result.returncode == 0, result.stderr
    return logdir, result.stdout


def test_table_json_and_events_agree(tiny_run):
    logdir, stdout = tiny_run
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] in (["1"], ["8"])]
    assert [row[0] for row in rows] == ["1", "8"]
    results = json.loads((logdir / "results.json").read_text())
    assert results["model"] == "rmc2-tiny"
    assert results["fingerprint"]["jax_backend"] == "cpu"
    by_batch = {r["batch_size"]: r for r in results["results"]}
    for row in by_batch.values():
        assert abs(sum(row["shares"].values()) - 1.0) <= SHARE_SUM_TOLERANCE
        assert row["end_to_end_ms"] == pytest.approx(row["stats"]["end_to_end"]["p50_ms"])
        for stage in STAGES:
            expected = row["stage_ms"][stage] / row["end_to_end_ms"]
            assert row["shares"][stage] == pytest.approx(expected)
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()
    for name in (*STAGES, REST):
        events = accumulator.Tensors(f"share/{name}")
        assert [event.step for event in events] == [1, 8]
        for event in events:
            value = float(tensor_util.make_ndarray(event.tensor_proto))
            assert value == pytest.approx(by_batch[event.step]["shares"][name], rel=1e-6)


def test_profile_trace_is_written_where_tensorboard_looks(tiny_run):
    logdir, stdout = tiny_run
    traces = glob.glob(str(logdir / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
    assert f"profile:     {logdir}/plugins/profile" in stdout


def test_bad_batch_sizes_fail_before_building():
    result = run_breakdown("--batch_sizes=4,-1")
    assert result.returncode != 0
    assert "--batch_sizes must be a non-empty comma-separated list" in result.stderr
