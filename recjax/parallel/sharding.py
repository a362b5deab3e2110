"""How embedding tables are split over a device mesh: TorchRec's sharding types, as plain data.

The mesh is (host, local): `hosts` hosts of `devices_per_host` devices each; device
`d = host * devices_per_host + local` is its flat index, the order in which a batch is split over
devices. A table is cut into shards, each a block of rows x columns placed on one device. The
sharding types are TorchRec's (`torchrec.distributed.types.ShardingType`):

  data_parallel    a full copy on every device; looked up locally, no communication.
  table_wise       the whole table on one device.
  column_wise      the columns split into pieces, each placed like a table-wise table; the pooled
                   pieces are concatenated.
  row_wise         the rows split into contiguous blocks over every device of the mesh; each device
                   pools the ids that fall in its block, and the partial sums are reduce-scattered
                   (written as an all-to-all and a local sum).
  table_row_wise   the table on one host, its rows split over that host's devices: row-wise
                   inside the host, table-wise across hosts (TorchRec's TWRW).

A `ShardingPlan` names one of these per table, with its shards; `recjax.parallel.planner` makes
plans, and `recjax.parallel.sharded_collection` runs them.
"""

import dataclasses
import enum
import math
from collections.abc import Sequence

from recjax.inputs.features import QUANTIZED_TABLE_DTYPES, TableConfig


class ShardingType(enum.StrEnum):
    DATA_PARALLEL = "data_parallel"
    TABLE_WISE = "table_wise"
    COLUMN_WISE = "column_wise"
    ROW_WISE = "row_wise"
    TABLE_ROW_WISE = "table_row_wise"


@dataclasses.dataclass(frozen=True)
class MeshShape:
    """`hosts` x `devices_per_host` devices; a batch is split evenly over all of them."""

    hosts: int
    devices_per_host: int

    def __post_init__(self):
        if self.hosts <= 0 or self.devices_per_host <= 0:
            raise ValueError(
                f"A mesh needs at least one host and one device per host; got hosts={self.hosts}, "
                f"devices_per_host={self.devices_per_host}."
            )

    @property
    def num_devices(self) -> int:
        return self.hosts * self.devices_per_host

    def host_of(self, device: int) -> int:
        return device // self.devices_per_host

    def devices_of_host(self, host: int) -> tuple[int, ...]:
        first = host * self.devices_per_host
        return tuple(range(first, first + self.devices_per_host))

    def __str__(self) -> str:
        return f"{self.hosts}x{self.devices_per_host}"


@dataclasses.dataclass(frozen=True)
class Shard:
    """Rows [rows[0], rows[1]) and columns [columns[0], columns[1]) of a table, on `device`."""

    device: int
    rows: tuple[int, int]
    columns: tuple[int, int]

    @property
    def num_rows(self) -> int:
        return self.rows[1] - self.rows[0]

    @property
    def dim(self) -> int:
        return self.columns[1] - self.columns[0]


@dataclasses.dataclass(frozen=True)
class TablePlan:
    """How one table is sharded: its type and its shards (for row-wise types, in row order)."""

    table: str
    sharding: ShardingType
    shards: tuple[Shard, ...]

    def device_bytes(self, table: TableConfig) -> dict[int, int]:
        """{device: bytes of this table's shards there}."""
        itemsize = table.row_bytes // table.dim
        held: dict[int, int] = {}
        for shard in self.shards:
            held[shard.device] = held.get(shard.device, 0) + shard.num_rows * shard.dim * itemsize
        return held


@dataclasses.dataclass(frozen=True)
class ShardingPlan:
    """One `TablePlan` per table of a model, over a mesh."""

    mesh: MeshShape
    tables: tuple[TablePlan, ...]

    def of(self, table: str) -> TablePlan:
        for plan in self.tables:
            if plan.table == table:
                return plan
        raise KeyError(
            f"The plan has no table {table!r}; it plans {[p.table for p in self.tables]}."
        )

    def device_bytes(self, tables: Sequence[TableConfig]) -> list[int]:
        """Bytes of table shards on each device (padding and the zero row not counted)."""
        held = [0] * self.mesh.num_devices
        by_name = {table.name: table for table in tables}
        for plan in self.tables:
            for device, size in plan.device_bytes(by_name[plan.table]).items():
                held[device] += size
        return held

    def process_bytes(self, tables: Sequence[TableConfig], devices: Sequence[int]) -> int:
        """Bytes of table shards on the given devices (one process's)."""
        held = self.device_bytes(tables)
        return sum(held[device] for device in devices)


# --- one table's plan per sharding type ------------------------------------------------------


def even_ranges(size: int, pieces: int) -> tuple[tuple[int, int], ...]:
    """[0, size) in `pieces` contiguous ranges of ceil(size / pieces) (TorchRec's row blocks);
    the last ones may be shorter or empty."""
    block = math.ceil(size / pieces)
    return tuple((min(i * block, size), min((i + 1) * block, size)) for i in range(pieces))


def data_parallel(table: TableConfig, mesh: MeshShape) -> TablePlan:
    full_rows, full_columns = (0, table.num_rows), (0, table.dim)
    return TablePlan(
        table.name,
        ShardingType.DATA_PARALLEL,
        tuple(Shard(device, full_rows, full_columns) for device in range(mesh.num_devices)),
    )


def table_wise(table: TableConfig, device: int) -> TablePlan:
    return TablePlan(
        table.name,
        ShardingType.TABLE_WISE,
        (Shard(device, (0, table.num_rows), (0, table.dim)),),
    )


def column_wise(table: TableConfig, devices: Sequence[int]) -> TablePlan:
    """Columns split evenly over `devices` (the dim must divide)."""
    if not devices or table.dim % len(devices):
        raise ValueError(
            f"Table {table.name!r}: column-wise sharding splits its dim {table.dim} evenly; "
            f"{len(devices)} pieces do not divide it."
        )
    return TablePlan(
        table.name,
        ShardingType.COLUMN_WISE,
        tuple(
            Shard(device, (0, table.num_rows), columns)
            for device, columns in zip(devices, even_ranges(table.dim, len(devices)), strict=True)
        ),
    )


def row_wise(table: TableConfig, mesh: MeshShape) -> TablePlan:
    return TablePlan(
        table.name,
        ShardingType.ROW_WISE,
        tuple(
            Shard(device, rows, (0, table.dim))
            for device, rows in enumerate(even_ranges(table.num_rows, mesh.num_devices))
        ),
    )


def table_row_wise(table: TableConfig, host: int, mesh: MeshShape) -> TablePlan:
    devices = mesh.devices_of_host(host)
    return TablePlan(
        table.name,
        ShardingType.TABLE_ROW_WISE,
        tuple(
            Shard(device, rows, (0, table.dim))
            for device, rows in zip(devices, even_ranges(table.num_rows, len(devices)), strict=True)
        ),
    )


def uniform_plan(
    tables: Sequence[TableConfig], sharding: ShardingType | str, mesh: MeshShape
) -> ShardingPlan:
    """Every table sharded the same way, placed round-robin (table-wise on device t mod P,
    table-row-wise on host t mod H, column-wise in two pieces on devices t, t+1 mod P, or one
    piece on a one-device mesh): a plan for tests and examples; the planner makes better ones."""
    sharding = ShardingType(sharding)
    num_devices = mesh.num_devices
    plans = []
    for index, table in enumerate(tables):
        if sharding is ShardingType.DATA_PARALLEL:
            plans.append(data_parallel(table, mesh))
        elif sharding is ShardingType.TABLE_WISE:
            plans.append(table_wise(table, index % num_devices))
        elif sharding is ShardingType.COLUMN_WISE:
            pieces = 2 if num_devices > 1 else 1
            devices = [(index + piece) % num_devices for piece in range(pieces)]
            plans.append(column_wise(table, devices))
        elif sharding is ShardingType.ROW_WISE:
            plans.append(row_wise(table, mesh))
        else:
            plans.append(table_row_wise(table, index % mesh.hosts, mesh))
    return ShardingPlan(mesh, tuple(plans))


# --- validation --------------------------------------------------------------------------------


def _check_contiguous(name: str, what: str, ranges: Sequence[tuple[int, int]], size: int) -> None:
    expected = 0
    for start, stop in ranges:
        if start != expected or stop < start:
            raise ValueError(
                f"Table {name!r}: its shards' {what} must be contiguous ranges covering "
                f"[0, {size}) in order; got {list(ranges)}."
            )
        expected = stop
    if expected != size:
        raise ValueError(
            f"Table {name!r}: its shards' {what} {list(ranges)} do not cover [0, {size})."
        )


def column_wise_allowed(table: TableConfig) -> bool:
    """Whether `table` may be split by columns: not a row-wise quantized table, whose scale and
    bias belong to whole rows (each piece would be quantized on its own, and differ)."""
    return table.dtype not in QUANTIZED_TABLE_DTYPES


def check_plan(plan: ShardingPlan, tables: Sequence[TableConfig]) -> None:
    """Raises ValueError unless `plan` shards each of `tables` exactly once, validly."""
    names = [table.name for table in tables]
    planned = [table_plan.table for table_plan in plan.tables]
    if sorted(planned) != sorted(names):
        raise ValueError(
            f"The plan must shard every table once: the model's tables are {names}, the plan's "
            f"{planned}."
        )
    mesh = plan.mesh
    for table_plan in plan.tables:
        table = next(table for table in tables if table.name == table_plan.table)
        shards, kind = table_plan.shards, table_plan.sharding
        full_rows, full_columns = (0, table.num_rows), (0, table.dim)
        if not shards:
            raise ValueError(f"Table {table.name!r}: the plan gives it no shards.")
        for shard in shards:
            if not 0 <= shard.device < mesh.num_devices:
                raise ValueError(
                    f"Table {table.name!r}: shard on device {shard.device}, outside the mesh's "
                    f"{mesh.num_devices} devices."
                )
        devices = [shard.device for shard in shards]
        row_wise_devices = {
            ShardingType.ROW_WISE: tuple(range(mesh.num_devices)),
            ShardingType.TABLE_ROW_WISE: mesh.devices_of_host(mesh.host_of(devices[0])),
            ShardingType.DATA_PARALLEL: tuple(range(mesh.num_devices)),
        }
        if kind in row_wise_devices and tuple(devices) != row_wise_devices[kind]:
            raise ValueError(
                f"Table {table.name!r}: {kind} shards lie on devices "
                f"{list(row_wise_devices[kind])} in order; got {devices}."
            )
        if kind in (ShardingType.TABLE_WISE, ShardingType.DATA_PARALLEL):
            if kind is ShardingType.TABLE_WISE and len(shards) != 1:
                raise ValueError(
                    f"Table {table.name!r}: table-wise means one shard; got {len(shards)}."
                )
            if any(s.rows != full_rows or s.columns != full_columns for s in shards):
                raise ValueError(f"Table {table.name!r}: {kind} shards hold the whole table.")
        elif kind is ShardingType.COLUMN_WISE:
            if not column_wise_allowed(table):
                raise ValueError(
                    f"Table {table.name!r} ({table.dtype}): a row-wise quantized table keeps one "
                    "scale and bias per row, so it cannot be split by columns; use table_wise, "
                    "row_wise or table_row_wise."
                )
            if any(shard.rows != full_rows for shard in shards):
                raise ValueError(f"Table {table.name!r}: column-wise shards hold every row.")
            _check_contiguous(table.name, "columns", [s.columns for s in shards], table.dim)
        else:
            if any(shard.columns != full_columns for shard in shards):
                raise ValueError(f"Table {table.name!r}: {kind} shards hold every column.")
            _check_contiguous(table.name, "rows", [s.rows for s in shards], table.num_rows)
