"""Sharding plans as data: the per-type constructors, validation and the static layout."""

import pytest

from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.parallel import layout, sharding
from recjax.parallel.sharding import MeshShape, Shard, ShardingPlan, ShardingType, TablePlan

MESH = MeshShape(hosts=2, devices_per_host=2)
TABLES = (TableConfig("a", 10, 8), TableConfig("b", 7, 8), TableConfig("c", 5, 4))


def test_even_ranges_are_torchrec_blocks():
    assert sharding.even_ranges(10, 4) == ((0, 3), (3, 6), (6, 9), (9, 10))
    assert sharding.even_ranges(2, 4) == ((0, 1), (1, 2), (2, 2), (2, 2))


def test_constructors_and_bytes_per_device():
    plan = ShardingPlan(
        MESH,
        (
            sharding.row_wise(TABLES[0], MESH),  # 3, 3, 3, 1 rows of 8 floats
            sharding.table_row_wise(TABLES[1], 1, MESH),  # 4, 3 rows on devices 2, 3
            sharding.column_wise(TABLES[2], [0, 3]),  # 5 rows x 2 columns on devices 0 and 3
        ),
    )
    sharding.check_plan(plan, TABLES)
    assert plan.device_bytes(TABLES) == [
        3 * 32 + 5 * 8,
        3 * 32,
        3 * 32 + 4 * 32,
        1 * 32 + 3 * 32 + 5 * 8,
    ]
    assert plan.process_bytes(TABLES, [2, 3]) == 224 + 168


@pytest.mark.parametrize(
    ("table_plan", "message"),
    [
        (TablePlan("a", ShardingType.TABLE_WISE, ()), "no shards"),
        (TablePlan("a", ShardingType.TABLE_WISE, (Shard(4, (0, 10), (0, 8)),)), "outside"),
        (TablePlan("a", ShardingType.TABLE_WISE, (Shard(0, (0, 9), (0, 8)),)), "whole table"),
        (
            TablePlan(
                "a",
                ShardingType.ROW_WISE,
                tuple(Shard(d, r, (0, 8)) for d, r in enumerate([(0, 3), (4, 6), (6, 9), (9, 10)])),
            ),
            "contiguous",
        ),
        (
            TablePlan(
                "a",
                ShardingType.TABLE_ROW_WISE,
                (Shard(1, (0, 5), (0, 8)), Shard(2, (5, 10), (0, 8))),
            ),
            "devices [0, 1] in order",
        ),
        (
            TablePlan(
                "a",
                ShardingType.COLUMN_WISE,
                (Shard(0, (0, 10), (0, 3)), Shard(1, (0, 10), (3, 7))),
            ),
            "do not cover [0, 8)",
        ),
    ],
)
def test_invalid_plans_are_named(table_plan, message):
    others = tuple(sharding.table_wise(table, 0) for table in TABLES[1:])
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        sharding.check_plan(ShardingPlan(MESH, (table_plan, *others)), TABLES)


def test_a_plan_must_cover_every_table_once():
    with pytest.raises(ValueError, match="every table once"):
        sharding.check_plan(ShardingPlan(MESH, (sharding.table_wise(TABLES[0], 0),)), TABLES)


def test_column_wise_needs_an_even_split():
    with pytest.raises(ValueError, match="do not divide"):
        sharding.column_wise(TABLES[0], [0, 1, 2])


def test_layout_by_hand():
    """Table-wise a on device 1, b on device 1 too, and c row-wise: worked out on paper."""
    plan = ShardingPlan(
        MESH,
        (
            sharding.table_wise(TABLES[0], 1),
            sharding.table_wise(TABLES[1], 1),
            sharding.row_wise(TABLES[2], MESH),  # rows (0,2) (2,4) (4,5) (5,5)
        ),
    )
    features = (
        FeatureConfig("fa", "a", 3),
        FeatureConfig("fb", "b", 3),
        FeatureConfig("fc", "c", 2),
        FeatureConfig("fc2", "c", 2),
    )
    result = layout.sharded_layout(plan, TABLES, features)
    buffers = {buffer.name: buffer for buffer in result.buffers}
    # Device 1 holds row 0 (zeros), a at rows 1..10, b at rows 11..17.
    assert buffers["all_to_all_d8_float32"].rows_per_device == 18
    assert [r.offset for r in buffers["all_to_all_d8_float32"].regions] == [1, 11]
    # Row-wise c: one region of 2 rows (its largest block) at row 1 of every device.
    assert buffers["row_wise_d4_float32"].rows_per_device == 3
    table_wise_group, row_wise_group = result.groups
    assert table_wise_group.slots == 2
    assert [len(routes) for routes in table_wise_group.routes] == [0, 2, 0, 0]
    assert [(p.feature, p.source, p.slot) for p in table_wise_group.pieces] == [
        (0, 1, 0),
        (1, 1, 1),
    ]
    assert row_wise_group.slots == 2  # both features of c, one slot each, on every device
    route = row_wise_group.routes[2][1]
    assert (route.feature, route.row_start, route.row_stop, route.offset) == (3, 4, 5, 1)
