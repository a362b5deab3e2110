"""Co-location: the core plan, the memory check, and that no instance outlives a failure."""

import dataclasses
import os
import re
import signal
import time

import pytest

import configs
from recjax.bench import colocation
from recjax.bench.colocation import InstanceFailedError, InstanceSpec, plan_cores, scale_rows
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.runtime.memory import InsufficientMemoryError, estimated_peak_bytes


def assert_gone(pid: int) -> None:
    """The process no longer exists (it was also reaped: no zombie left in /proc)."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not os.path.exists(f"/proc/{pid}")


@pytest.mark.parametrize(
    ("instances", "cores", "expected", "oversubscribed"),
    [
        (1, [0, 1], [[0, 1]], False),
        (2, [1, 0], [[0], [1]], False),
        (2, [0, 1, 2], [[0], [1]], False),  # the leftover core stays idle: equal shares
        (2, [0, 1, 2, 3], [[0, 1], [2, 3]], False),
        (3, [0, 1], [[0], [1], [0]], True),
        (4, [5], [[5], [5], [5], [5]], True),
    ],
)
def test_plan_cores(instances, cores, expected, oversubscribed):
    assert plan_cores(instances, cores) == (expected, oversubscribed)


@pytest.mark.parametrize(
    ("instances", "per_instance", "expected", "oversubscribed"),
    [
        (1, 1, [[0]], False),
        (2, 1, [[0], [1]], False),
        (4, 1, [[0], [1], [0], [1]], True),
        (2, 2, [[0, 1], [0, 1]], True),
    ],
)
def test_plan_cores_with_fixed_cores_per_instance(
    instances, per_instance, expected, oversubscribed
):
    assert plan_cores(instances, [0, 1], per_instance) == (expected, oversubscribed)
    with pytest.raises(ValueError, match="cores_per_instance must be between 1 and the 2"):
        plan_cores(1, [0, 1], 3)


def test_scale_rows():
    full = configs.get("rmc2")
    half = scale_rows(full, 0.5)
    assert half.name == "rmc2-rows0.5"
    assert {table.num_rows for table in half.tables} == {250_000}
    assert [(t.name, t.dim, t.dtype) for t in half.tables] == [
        (t.name, t.dim, t.dtype) for t in full.tables
    ]
    # Everything but the name and the tables' rows is the preset's (features, the architecture).
    assert dataclasses.replace(half, name=full.name, tables=full.tables) == full
    assert type(half) is type(full)
    assert scale_rows(full, 1.0) is full
    assert min(t.num_rows for t in scale_rows(configs.get("rmc2-tiny"), 1e-6).tables) == 1
    with pytest.raises(ValueError, match=r"rows_scale must be in \(0, 1\]; got 1.5"):
        scale_rows(full, 1.5)


def test_scale_rows_scales_each_table_on_its_own():
    base = configs.get("rmc2-tiny")
    tables = (
        dataclasses.replace(base.tables[0], num_rows=1_000),
        dataclasses.replace(base.tables[1], num_rows=301),
        dataclasses.replace(base.tables[2], num_rows=3),
    )
    features = tuple(FeatureConfig(table.name, table.name, capacity=4) for table in tables)
    config = dataclasses.replace(base, name="mixed", tables=tables, features=features)
    scaled = scale_rows(config, 0.1)
    assert scaled.name == "mixed-rows0.1"
    assert [table.num_rows for table in scaled.tables] == [100, 30, 1]  # 0.3 rows: at least 1
    assert scaled.features == features


def test_memory_check_names_a_scale_that_fits():
    config = configs.get("rmc2")
    one = estimated_peak_bytes(config, 16)
    assert colocation.check_memory(config, 2, 16, available_bytes=2 * one) == 2 * one
    available = int(2.5 * one)  # room for 2.5 copies: 4 copies need about half the rows
    with pytest.raises(InsufficientMemoryError) as error:
        colocation.check_memory(config, 4, 16, available_bytes=available)
    scale = float(re.search(r"--rows_scale=([0-9.]+)", str(error.value)).group(1))
    assert 4 * estimated_peak_bytes(scale_rows(config, scale), 16) <= available
    bigger = (
        max(s for s in colocation.SUGGESTED_ROW_SCALES if s < 1 and s > scale)
        if scale < 0.5
        else None
    )
    if bigger is not None:
        assert 4 * estimated_peak_bytes(scale_rows(config, bigger), 16) > available
    assert "4 instances of rmc2 need about" in str(error.value)


def spec(index, config, duration_s=60.0):
    return InstanceSpec(index, config, batch_size=2, duration_s=duration_s, cores=(0,), seed=0)


def collect_pids(lines):
    return [int(match) for line in lines for match in re.findall(r"pid (\d+)", line)]


def test_a_failing_instance_fails_the_run_and_stops_the_others():
    # Over 2**31 rows: the model refuses to build (int32 ids), in the instance, before allocating.
    broken = dataclasses.replace(
        configs.get("rmc1-tiny"),
        name="broken",
        tables=(TableConfig("huge", 2**31, 32),),
        features=(FeatureConfig("huge", "huge", capacity=1),),
    )
    lines = []
    start = time.monotonic()
    with pytest.raises(InstanceFailedError, match=r"instance 0 \(pid \d+\) failed") as error:
        colocation.run_instances(
            [spec(0, broken), spec(1, configs.get("rmc1-tiny"))], progress=lines.append
        )
    assert "int32 ids address at most" in str(error.value)
    assert time.monotonic() - start < 60  # it did not wait for the healthy instance's duration
    pids = collect_pids(lines)
    assert len(pids) == 2
    for pid in pids:
        assert_gone(pid)


def test_an_instance_killed_while_timing_fails_the_run_and_stops_the_others():
    lines = []

    def progress(line):
        lines.append(line)
        if "ready" in line:  # every instance is built and about to time: kill instance 1
            os.kill(collect_pids(lines)[1], signal.SIGKILL)

    tiny = configs.get("rmc1-tiny")
    with pytest.raises(InstanceFailedError, match=r"instance 1 \(pid \d+\) exited with code -9"):
        colocation.run_instances([spec(0, tiny), spec(1, tiny)], progress=progress)
    for pid in collect_pids(lines):
        assert_gone(pid)


def test_run_colocation_gives_each_n_its_specs(monkeypatch):
    seen = []

    def fake_run_instances(specs, progress):
        seen.append(list(specs))
        return []

    monkeypatch.setattr(colocation, "run_instances", fake_run_instances)
    tiny = configs.get("rmc1-tiny")
    runs = colocation.run_colocation(
        tiny, [1, 3], 4, 0.5, seed=7, usable_cores=[0, 1], huge_pages=False, progress=print
    )
    assert [(run.instances, run.oversubscribed) for run in runs] == [(1, False), (3, True)]
    assert [[spec.cores for spec in specs] for specs in seen] == [[(0, 1)], [(0,), (1,), (0,)]]
    for specs in seen:
        assert [spec.index for spec in specs] == list(range(len(specs)))
        for spec in specs:
            assert (spec.config, spec.batch_size, spec.duration_s, spec.seed) == (tiny, 4, 0.5, 7)
            assert spec.huge_pages is False
