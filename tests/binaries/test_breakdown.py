"""The breakdown binary end to end on a tiny preset."""

import glob
import json
import os

import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

import configs
from recjax.bench.breakdown import REST, SHARE_SUM_TOLERANCE
from tests.binaries.binary import run_binary

STAGE_KINDS = {stage.name: stage.kind for stage in configs.get("rmc2-tiny").stages()}

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
    assert results["family"] == "dlrm"
    assert results["fingerprint"]["jax_backend"] == "cpu"
    by_batch = {r["batch_size"]: r for r in results["results"]}
    for row in by_batch.values():
        assert abs(sum(row["shares"].values()) - 1.0) <= SHARE_SUM_TOLERANCE
        assert row["end_to_end_ms"] == pytest.approx(row["stats"]["end_to_end"]["p50_ms"])
        assert row["stage_kinds"] == STAGE_KINDS
        assert list(row["shares"]) == [*STAGE_KINDS, REST]
        for stage in STAGE_KINDS:
            expected = row["stage_ms"][stage] / row["end_to_end_ms"]
            assert row["shares"][stage] == pytest.approx(expected)
        stages_ms = sum(row["stage_ms"].values())
        for kind in ("fc", "embedding"):
            of_kind = sum(row["stage_ms"][s] for s, k in STAGE_KINDS.items() if k == kind)
            assert row[f"{kind}_share_of_stages"] == pytest.approx(of_kind / stages_ms)
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()

    def scalars(tag):
        events = accumulator.Tensors(tag)
        assert [event.step for event in events] == [1, 8]
        return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in events}

    for name in (*STAGE_KINDS, REST):
        for step, value in scalars(f"share/{name}").items():
            assert value == pytest.approx(by_batch[step]["shares"][name], rel=1e-6)
    for name in STAGE_KINDS:
        for step, value in scalars(f"time_ms/{name}").items():
            assert value == pytest.approx(by_batch[step]["stage_ms"][name], rel=1e-6)
    for kind in ("fc", "embedding"):
        for step, value in scalars(f"share_of_stages/{kind}").items():
            assert value == pytest.approx(by_batch[step][f"{kind}_share_of_stages"], rel=1e-6)


def test_profile_trace_is_written_where_tensorboard_looks(tiny_run):
    logdir, stdout = tiny_run
    traces = glob.glob(str(logdir / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
    assert f"profile:     {logdir}/plugins/profile" in stdout


def test_bad_batch_sizes_fail_before_building():
    result = run_breakdown("--batch_sizes=4,-1")
    assert result.returncode != 0
    assert "--batch_sizes must be a non-empty comma-separated list" in result.stderr
