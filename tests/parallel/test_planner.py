"""The planner: plans that fit, failures that name the shortfall, costs worked out by hand."""

import pytest

import configs
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.parallel import planner, sharding
from recjax.parallel.sharding import MeshShape, ShardingType

GIB = 2**30


def test_dcnv2_full_over_8_hosts_fits_with_the_reserve():
    config = configs.get("dcnv2-full")
    planned = planner.plan_tables(
        config.tables,
        config.features,
        batch_size=2048,
        mesh=MeshShape(8, 1),
        memory_per_device=24 * GIB,
    )
    sharding.check_plan(planned.plan, config.tables)
    assert planned.usable_per_device == int(24 * GIB * 0.85)
    assert list(planned.device_bytes) == planned.plan.device_bytes(config.tables)
    assert max(planned.device_bytes) <= planned.usable_per_device
    assert sum(planned.device_bytes) >= config.table_bytes  # replicas count on every device
    # Balanced: the busiest device's estimated time is within 5% of the mean.
    totals = [cost.total_s for cost in planned.device_costs]
    assert max(totals) <= 1.05 * sum(totals) / len(totals)
    assert planned.step_s == max(totals)


def test_too_little_memory_in_total_names_the_shortfall():
    config = configs.get("dcnv2-full")
    with pytest.raises(planner.PlanError, match=r"short by 15\.76 GiB"):
        planner.plan_tables(
            config.tables,
            config.features,
            batch_size=2048,
            mesh=MeshShape(4, 1),
            memory_per_device=24 * GIB,
        )


def test_a_table_that_fits_no_placement_is_named_with_its_shortfall():
    # 2 devices of 1,000 bytes, no reserve. "wide" (1,280 bytes) goes first, row-wise, 640 on
    # each; "odd" (1 row of 101 floats: no row blocks, no even column pieces) needs 404 bytes on
    # one device (or on both, replicated), where 360 are free: short by 44.
    tables = (TableConfig("wide", 40, 8), TableConfig("odd", 1, 101))
    features = (FeatureConfig("w", "wide", 1), FeatureConfig("o", "odd", 1))
    with pytest.raises(planner.PlanError, match=r"Table 'odd' .* short by .*\(44 bytes\)"):
        planner.plan_tables(
            tables,
            features,
            batch_size=2,
            mesh=MeshShape(1, 2),
            memory_per_device=1000,
            cost_model=planner.CostModel(reserve_fraction=0.0),
        )


def test_equal_tables_are_spread_one_per_device():
    # Tables too small to split by rows (3 rows < 4 devices), too narrow to split by columns, and
    # not allowed to replicate: greedy balancing puts one on each device.
    tables = tuple(TableConfig(f"t{i}", 3, 8) for i in range(4))
    features = tuple(FeatureConfig(t.name, t.name, 2) for t in tables)
    planned = planner.plan_tables(
        tables,
        features,
        batch_size=8,
        mesh=MeshShape(1, 4),
        memory_per_device=10_000,
        cost_model=planner.CostModel(data_parallel_max_bytes=0),
    )
    devices = sorted(p.shards[0].device for p in planned.plan.tables)
    assert devices == [0, 1, 2, 3]
    assert all(p.sharding is ShardingType.TABLE_WISE for p in planned.plan.tables)


def test_table_wise_costs_by_hand():
    # One table of 64-float rows (256 bytes), 5 lookups per sample, on device 0 of 2 hosts x 1.
    table = TableConfig("t", 1000, 64)
    load = planner.TableLoad.of(table, [FeatureConfig("f", "t", 5)])
    model = planner.CostModel(
        gather_bytes_per_s=1e9, intra_host_bytes_per_s=1e10, inter_host_bytes_per_s=1e8
    )
    costs = planner.table_costs(load, sharding.table_wise(table, 0), MeshShape(2, 1), 100, model)
    # Owner: gathers 100 x 5 rows of 256 bytes; receives the other device's 50 x 5 ids of 4
    # bytes and sends it 50 pooled rows of 256 bytes, across hosts.
    cross = 50 * 5 * 4 + 50 * 64 * 4
    assert costs[0].lookup_s == pytest.approx(100 * 5 * 256 / 1e9)
    assert costs[0].inter_host_s == pytest.approx(cross / 1e8)
    assert costs[1].lookup_s == 0
    assert costs[1].inter_host_s == pytest.approx(cross / 1e8)


def test_row_wise_costs_by_hand():
    # 2 devices on one host; rows split in two; 4 lookups of 32-float rows (128 bytes, read as
    # the 256-byte minimum); ids to both devices; a reduce-scatter of [B, 32] partial sums (half
    # of them to the other device).
    table = TableConfig("t", 1000, 32)
    load = planner.TableLoad.of(table, [FeatureConfig("f", "t", 4, weighted=True)])
    model = planner.CostModel(gather_bytes_per_s=1e9, intra_host_bytes_per_s=1e10)
    mesh = MeshShape(1, 2)
    costs = planner.table_costs(load, sharding.row_wise(table, mesh), mesh, 10, model)
    ids_in = 5 * 4 * 8  # b x c x (id + weight) from the other device
    ids_out = 5 * 4 * 8
    reduce_scatter = 10 * 32 * 4 / 2
    for device in (0, 1):
        assert costs[device].lookup_s == pytest.approx(10 * 4 / 2 * 256 / 1e9)
        assert costs[device].intra_host_s == pytest.approx(
            (ids_in + ids_out + reduce_scatter) / 1e10
        )
        assert costs[device].inter_host_s == 0


@pytest.mark.parametrize(
    ("text", "size"),
    [("24GiB", 24 * GIB), ("512MiB", 512 * 2**20), ("24GB", 24_000_000_000), ("1e9", 10**9)],
)
def test_parse_bytes(text, size):
    assert planner.parse_bytes(text) == size


@pytest.mark.parametrize("text", ["24 parsecs", "-1GiB", ""])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError, match="size"):
        planner.parse_bytes(text)
