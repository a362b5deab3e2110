"""Where every shard lives on its device, and how each feature's ids reach it: all static.

A `ShardingPlan` says which device holds which block of which table. This module turns it, with
the model's features, into the static layout the sharded lookup is compiled from:

Buffers. Every device holds, per (kind, dim, dtype), one [N, W] buffer of stored rows (d floats,
or a quantized row's codes, scale and bias: `RowFormat`): row 0 is zeros (which a quantized row
decodes to as well), then its shards, each in a region starting at a known local row. All
devices' buffers of one kind have the same N (padded), so together they are one global [P * N, W]
array sharded over the mesh (data-parallel buffers are one replicated [N, W] array). Kinds:
"all_to_all" (table-wise shards and column-wise pieces, placed whole on one device), "row_wise",
"table_row_wise", "data_parallel".

Routes. A sparse feature's ids are sent to the devices holding its table, already translated to
rows of the destination's buffer: an id outside the destination's block, or a padding position
past the bag's length, is sent as row 0, which is zeros, so the destination pools every id it
receives with no mask and no range test (and a sequence feature reads zeros past its length, as
the unsharded lookup gives). An `ExchangeGroup` gathers features of one buffer, capacity,
sequence-ness and weighting: its ids travel as one [P, b, slots, C] block, `routes[p][j]` saying
which feature (and which of its table's rows) fills slot j of the block sent to device p.

Shapes: `P` devices, `H` hosts, `L` devices per host, `b` samples per device, `C` capacity,
`d` dim of a shard.
"""

import dataclasses
from collections.abc import Sequence

from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.layers.quantization import RowFormat
from recjax.parallel.sharding import ShardingPlan, ShardingType

ALL_TO_ALL = "all_to_all"
ROW_WISE = "row_wise"
TABLE_ROW_WISE = "table_row_wise"
DATA_PARALLEL = "data_parallel"
KINDS = (ALL_TO_ALL, ROW_WISE, TABLE_ROW_WISE, DATA_PARALLEL)

_KIND_OF = {
    ShardingType.TABLE_WISE: ALL_TO_ALL,
    ShardingType.COLUMN_WISE: ALL_TO_ALL,
    ShardingType.ROW_WISE: ROW_WISE,
    ShardingType.TABLE_ROW_WISE: TABLE_ROW_WISE,
    ShardingType.DATA_PARALLEL: DATA_PARALLEL,
}

# Local row 0 of every buffer: all zeros, the destination of masked ids.
ZERO_ROW = 0


@dataclasses.dataclass(frozen=True)
class Region:
    """Shard `shard` of `table` (its index in the table's plan) on `device`, from local row
    `offset` of that device's buffer."""

    table: str
    shard: int
    device: int
    offset: int


@dataclasses.dataclass(frozen=True)
class BufferLayout:
    """One buffer kind of one dim and dtype: `rows_per_device` rows on every device (row 0
    zeros), stored packed as `row_format` says (a table's row alignment is not kept)."""

    name: str
    kind: str
    dim: int
    dtype: str
    rows_per_device: int
    regions: tuple[Region, ...]

    @property
    def replicated(self) -> bool:
        return self.kind == DATA_PARALLEL

    @property
    def row_format(self) -> RowFormat:
        return RowFormat(self.dtype, self.dim)


@dataclasses.dataclass(frozen=True)
class Route:
    """The ids of `feature` (its index among the model's features) in rows [row_start, row_stop)
    of its table go to local row id - row_start + offset of the destination; others to row 0."""

    feature: int
    row_start: int
    row_stop: int
    offset: int
    full_rows: bool


@dataclasses.dataclass(frozen=True)
class Piece:
    """Where one feature's output comes back: slot `slot` of source `source` (the device of an
    all-to-all group, the host of a table-row-wise group, 0 otherwise), its columns
    [column_start, column_start + d) of the feature's dim."""

    feature: int
    source: int
    slot: int
    column_start: int


@dataclasses.dataclass(frozen=True)
class ExchangeGroup:
    """Features whose ids travel together: one buffer, capacity, sequence-ness and weighting.

    `routes[p]` are the slots of the block sent to device p (every device, in mesh order; one
    entry, the device itself, for data-parallel groups), `slots` the block's slot count (shorter
    route lists are padded with row-0 ids), `pieces` where each feature's output comes back.
    """

    kind: str
    buffer: str
    capacity: int
    sequence: bool
    weighted: bool
    slots: int
    routes: tuple[tuple[Route, ...], ...]
    pieces: tuple[Piece, ...]


@dataclasses.dataclass(frozen=True)
class ShardedLayout:
    buffers: tuple[BufferLayout, ...]
    groups: tuple[ExchangeGroup, ...]

    def buffer(self, name: str) -> BufferLayout:
        return next(buffer for buffer in self.buffers if buffer.name == name)

    @property
    def device_bytes(self) -> int:
        """Bytes of buffers on each device (the same on all: padded, zero rows included)."""
        return sum(buffer.rows_per_device * buffer.row_format.row_bytes for buffer in self.buffers)


def buffer_name(kind: str, dim: int, dtype: str) -> str:
    return f"{kind}_d{dim}_{dtype}"


def _regions(
    plan: ShardingPlan, tables: dict[str, TableConfig]
) -> dict[str, tuple[BufferLayout, dict[tuple[str, int], int]]]:
    """{buffer name: (layout, {(table, shard index): local offset})}."""
    mesh = plan.mesh
    # Per buffer: the next free local row of each device.
    next_row: dict[str, list[int]] = {}
    regions: dict[str, list[Region]] = {}
    meta: dict[str, tuple[str, int, str]] = {}
    offsets: dict[str, dict[tuple[str, int], int]] = {}

    def place(name: str, region_rows: int, table: str, shard_devices: Sequence[tuple[int, int]]):
        """One region of `region_rows` rows at the same offset on every listed device."""
        rows = next_row.setdefault(name, [ZERO_ROW + 1] * mesh.num_devices)
        offset = max(rows[device] for _, device in shard_devices)
        for shard_index, device in shard_devices:
            regions.setdefault(name, []).append(Region(table, shard_index, device, offset))
            offsets.setdefault(name, {})[(table, shard_index)] = offset
            rows[device] = offset + region_rows

    for table_plan in plan.tables:
        table = tables[table_plan.table]
        kind = _KIND_OF[table_plan.sharding]
        shards = table_plan.shards
        if kind == ALL_TO_ALL:
            for index, shard in enumerate(shards):
                name = buffer_name(kind, shard.dim, table.dtype)
                meta[name] = (kind, shard.dim, table.dtype)
                place(name, shard.num_rows, table.name, [(index, shard.device)])
        else:
            # Row-wise kinds: one region per table, as large as its largest block, at the same
            # offset on each of its devices, so a route needs no per-device offset table.
            name = buffer_name(kind, table.dim, table.dtype)
            meta[name] = (kind, table.dim, table.dtype)
            block = max(shard.num_rows for shard in shards)
            place(name, block, table.name, [(i, shard.device) for i, shard in enumerate(shards)])
    out = {}
    for name, (kind, dim, dtype) in meta.items():
        if max(next_row[name]) >= 2**31:
            raise ValueError(
                f"Buffer {name} would hold {max(next_row[name]):,} rows on one device; int32 ids "
                f"address at most {2**31 - 1:,}: spread its tables over more devices."
            )
        layout = BufferLayout(
            name=name,
            kind=kind,
            dim=dim,
            dtype=dtype,
            rows_per_device=max(next_row[name]),
            regions=tuple(regions[name]),
        )
        out[name] = (layout, offsets[name])
    return out


def sharded_layout(
    plan: ShardingPlan, tables: Sequence[TableConfig], features: Sequence[FeatureConfig]
) -> ShardedLayout:
    """The buffers and exchange groups of `plan` for `features` (the plan must be checked)."""
    by_name = {table.name: table for table in tables}
    buffers = _regions(plan, by_name)
    mesh = plan.mesh
    num_devices = mesh.num_devices
    # Each group's routes per destination device, and its pieces, keyed by
    # (kind, buffer, capacity, sequence, weighted).
    routes: dict[tuple, list[list[Route]]] = {}
    pieces: dict[tuple, list[Piece]] = {}
    for index, feature in enumerate(features):
        table = by_name[feature.table]
        table_plan = plan.of(table.name)
        kind = _KIND_OF[table_plan.sharding]
        sequence = feature.pooling == "none"

        def group(name: str, _kind=kind, _feature=feature, _sequence=sequence) -> tuple:
            key = (_kind, name, _feature.capacity, _sequence, _feature.weighted)
            destinations = 1 if _kind == DATA_PARALLEL else num_devices
            routes.setdefault(key, [[] for _ in range(destinations)])
            pieces.setdefault(key, [])
            return key

        if kind == ALL_TO_ALL:
            for shard_index, shard in enumerate(table_plan.shards):
                name = buffer_name(kind, shard.dim, table.dtype)
                offset = buffers[name][1][(table.name, shard_index)]
                key = group(name)
                slot = len(routes[key][shard.device])
                routes[key][shard.device].append(Route(index, 0, table.num_rows, offset, True))
                pieces[key].append(Piece(index, shard.device, slot, shard.columns[0]))
        elif kind == ROW_WISE:
            name = buffer_name(kind, table.dim, table.dtype)
            key = group(name)
            slot = len(routes[key][0])
            for shard_index, shard in enumerate(table_plan.shards):
                offset = buffers[name][1][(table.name, shard_index)]
                routes[key][shard.device].append(Route(index, *shard.rows, offset, False))
            pieces[key].append(Piece(index, 0, slot, 0))
        elif kind == TABLE_ROW_WISE:
            name = buffer_name(kind, table.dim, table.dtype)
            key = group(name)
            host = mesh.host_of(table_plan.shards[0].device)
            slot = len(routes[key][table_plan.shards[0].device])
            for shard_index, shard in enumerate(table_plan.shards):
                offset = buffers[name][1][(table.name, shard_index)]
                routes[key][shard.device].append(Route(index, *shard.rows, offset, False))
            pieces[key].append(Piece(index, host, slot, 0))
        else:
            name = buffer_name(kind, table.dim, table.dtype)
            key = group(name)
            offset = buffers[name][1][(table.name, 0)]
            slot = len(routes[key][0])
            routes[key][0].append(Route(index, 0, table.num_rows, offset, True))
            pieces[key].append(Piece(index, 0, slot, 0))
    groups = tuple(
        ExchangeGroup(
            kind=kind,
            buffer=name,
            capacity=capacity,
            sequence=sequence,
            weighted=weighted,
            slots=max(len(slots) for slots in routes[key]),
            routes=tuple(tuple(slots) for slots in routes[key]),
            pieces=tuple(pieces[key]),
        )
        for key in routes
        for kind, name, capacity, sequence, weighted in [key]
    )
    return ShardedLayout(tuple(layout for layout, _ in buffers.values()), groups)
