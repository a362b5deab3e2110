"""The whole model with sharded tables equals the unsharded model; budgets are enforced."""

import dataclasses

import jax
import numpy as np
import pytest

import configs
from recjax.bench import sharded_latency
from recjax.parallel import planner, sharding
from recjax.parallel.sharded_collection import (
    MemoryBudgetError,
    ShardedEmbeddingCollection,
    device_mesh,
)
from recjax.parallel.sharded_model import host_batch, reference_model
from recjax.parallel.table_init import BLOCK_ROWS, full_table, table_rows
from tests.parallel.simulated import run_on_devices

CASES = [
    "2x2/table_row_wise",
    "1x4/column_wise",
    "4x1/row_wise",
    "2x2/table_row_wise/int8",
    "4x1/row_wise/int4",
]


@pytest.fixture(scope="module")
def results():
    return run_on_devices("tests.parallel.sharded_model_check", 4)


@pytest.mark.parametrize("case", CASES)
def test_sharded_model_equals_unsharded(results, case):
    result = results[case]
    assert result["valid"] and result["sharded_by_samples"]
    assert result["max_difference"] < 1e-6
    # The dense layers run data-parallel: no table or activation is gathered.
    assert "all-gather" not in result["collectives"]
    if case.endswith(("int8", "int4")):  # the quantized rows were really read
        assert result["from_float32"] > 1e-5


def test_a_quantized_table_is_not_split_by_columns():
    config = dataclasses.replace(configs.get("rmc1-tiny"), table_dtype="int8")
    mesh_shape = sharding.MeshShape(1, 4)
    with pytest.raises(ValueError, match=r"int8\): a row-wise quantized table .* by columns"):
        sharding.check_plan(
            sharding.uniform_plan(config.tables, "column_wise", mesh_shape), config.tables
        )
    planned = planner.plan_tables(
        config.tables, config.features, batch_size=64, mesh=mesh_shape, memory_per_device=2**30
    )
    assert all(table.sharding.value != "column_wise" for table in planned.plan.tables)
    float32 = configs.get("rmc1-tiny")  # the same float32 tables may be split
    sharding.check_plan(
        sharding.uniform_plan(float32.tables, "column_wise", mesh_shape), float32.tables
    )


def test_any_block_of_rows_is_the_same_as_in_the_whole_table():
    table = sharding.TableConfig("t", 2 * BLOCK_ROWS + 10, 6)
    whole = full_table(7, 3, table)
    assert np.abs(whole).max() <= 1 / np.sqrt(table.num_rows)
    rows, columns = (BLOCK_ROWS - 5, 2 * BLOCK_ROWS + 3), (2, 5)
    np.testing.assert_array_equal(
        table_rows(7, 3, table, rows, columns), whole[slice(*rows), slice(*columns)]
    )
    assert not np.array_equal(full_table(7, 4, table), whole)  # tables differ


def test_host_batch_is_the_device_slices_in_order():
    config = configs.get("rmc1-tiny")
    whole = host_batch(config, 8, 5, 4)
    assert whole.ids.shape == (8, config.lookups_per_sample)
    assert not np.array_equal(whole.ids[:2], whole.ids[2:4])  # each slice its own draw
    np.testing.assert_array_equal(host_batch(config, 8, 5, 4).ids, whole.ids)
    with pytest.raises(ValueError, match="multiple of 4"):
        host_batch(config, 6, 5, 4)


def test_a_process_refuses_shards_over_its_budget():
    # 8 tables of 1,000 rows of 128 bytes, and the zero row: 1,024,128 bytes on one device.
    config = configs.get("rmc1-tiny")
    mesh_shape = sharding.MeshShape(1, 1)
    plan = sharding.uniform_plan(config.tables, "table_wise", mesh_shape)
    with pytest.raises(MemoryBudgetError, match=r"over its budget of 1,000,000 bytes by 24,128"):
        ShardedEmbeddingCollection(
            config.tables,
            config.features,
            plan,
            device_mesh(mesh_shape, jax.devices()[:1]),
            lowering="gather_sum",
            shard_values=lambda *args: pytest.fail("built a shard over the budget"),
            budget_bytes=1_000_000,
        )


def test_the_launcher_refuses_a_plan_over_the_budget_before_starting():
    config = configs.get("rmc1-tiny")
    settings = sharded_latency.ShardedSettings(
        processes=2,
        mesh=sharding.MeshShape(2, 1),
        batch_sizes=(4,),
        seed=0,
        warmup=0,
        iterations=1,
        plan="row_wise",
        memory_per_process=100_000,
    )
    # Row-wise over 2: one buffer of the zero row and 500 rows of each table, 128 bytes a row.
    unlimited = dataclasses.replace(settings, memory_per_process=None)
    assert sharded_latency.check_budget(config, unlimited) == (1 + 8 * 500) * 128
    with pytest.raises(MemoryBudgetError, match="over the budget of 100,000 bytes"):
        sharded_latency.check_budget(config, settings)


def test_worker_commands_replace_the_group_flags():
    command = sharded_latency.worker_command(
        "benchmarks.latency",
        ["--model=rmc1-tiny", "--logdir", "/a", "--processes=2", "--process_id=5"],
        1,
        "localhost:9",
        "/run",
    )
    assert command[1:] == [
        "-m",
        "benchmarks.latency",
        "--model=rmc1-tiny",
        "--processes=2",
        "--process_id=1",
        "--coordinator=localhost:9",
        "--logdir=/run",
    ]


def test_the_unsharded_reference_keeps_its_tables_on_the_device():
    # NumPy tables would be copied into the compiled program on every call: the whole table set
    # per call, which made the unsharded baseline of `benchmarks.latency --processes` 20-200x slow.
    model = reference_model(configs.get("rmc1-tiny"), seed=3)
    buffers = model.sparse_arch.table_buffers()
    assert buffers and all(isinstance(buffer, jax.Array) for buffer in buffers.values())
