"""A sharding planner: which devices hold which blocks of which tables, fitting memory.

Input:  the model's tables and features (rows, dim, dtype bytes, lookups per sample, pooling),
        the batch size, the mesh (hosts x devices per host) and each device's memory.
Output: a `Planned`: a `ShardingPlan` (per table: sharding type, devices, row and column ranges),
        each device's table bytes, and each device's estimated time per batch.

The method is TorchRec's greedy placement (`torchrec.distributed.planner`), simplified: tables
are placed largest first; for each, every candidate (data-parallel if small, table-wise on any
device, column-wise in 2 or 4 pieces on the least-loaded devices, row-wise over the mesh,
table-row-wise on any host) is scored by the estimated time per batch of the busiest device after
placing it (ties: the smallest total time, then the fullest device's memory), and the best one
that fits every device's memory, less the reserve, wins. A table no candidate fits fails the plan,
naming the table and the shortfall.

Cost model (per batch of B samples over P = H x L devices, b = B / P per device; per table t with
c_t lookups per sample, rows of r_t bytes, o_t output values per sample, i_t id bytes per lookup):

  lookup       rows gathered from memory, at `gather_bytes_per_s`, each costing at least
               `min_row_read_bytes`: the owner of a table-wise table gathers B c_t rows of r_t
               bytes; a row-wise shard B c_t / P (ids uniform over rows; plus B c_t cache-hot
               zero-row reads, not counted); a column piece B c_t rows of r_t / n bytes; a
               data-parallel copy b c_t rows.
  ids          every exchanged id (and weight) crosses to its destination; with static shapes, a
               row-wise table sends each device's ids to every device (B c_t i_t in and out per
               device, the volume of an all-gather of ids).
  outputs      pooled rows back: an all-to-all of B o_t 4 bytes from a table-wise owner; for a
               row-wise table, a reduce-scatter written as an all-to-all (1 / P of the B o_t 4
               bytes of partial sums to each other device, then a local sum).
  Traffic between devices of one host moves at `intra_host_bytes_per_s`, across hosts at
  `inter_host_bytes_per_s`. Times add; the busiest device bounds the step (collectives wait
  for the slowest participant).

The constants are assumptions, stated with every plan: what one host reads (11-15 GB/s random rows
on a 2-core AMD EPYC, docs/design/embedding-bags.md), a memory copy within a host, and a 100 Gb/s
network between hosts.
"""

import dataclasses
import math
from collections.abc import Sequence

from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.parallel import sharding
from recjax.parallel.sharding import MeshShape, ShardingPlan, ShardingType, TablePlan

ID_BYTES = 4
WEIGHT_BYTES = 4
OUTPUT_BYTES = 4  # pooled rows are float32


class PlanError(ValueError):
    """No plan fits: names the table that does not fit and by how many bytes."""


@dataclasses.dataclass(frozen=True)
class CostModel:
    """What the planner assumes about the machines.

    Attributes:
      gather_bytes_per_s: random embedding rows one device reads per second.
      intra_host_bytes_per_s: bytes per second between two devices of one host.
      inter_host_bytes_per_s: bytes per second into or out of one device across hosts.
      reserve_fraction: the part of each device's memory left for everything but table shards
        (runtime, compiled programs, batches, exchange buffers, activations).
      data_parallel_max_bytes: tables at most this large may be replicated on every device.
      min_row_read_bytes: a random row read costs at least this many bytes of bandwidth: reads
        of a few cache lines are bound by memory latency, not by their size (so splitting a
        row into narrow column pieces does not make its reads cheaper).
    """

    gather_bytes_per_s: float = 12e9
    intra_host_bytes_per_s: float = 40e9
    inter_host_bytes_per_s: float = 12.5e9
    reserve_fraction: float = 0.15
    data_parallel_max_bytes: int = 2**20
    min_row_read_bytes: int = 256

    def __post_init__(self):
        if not 0 <= self.reserve_fraction < 1:
            raise ValueError(f"reserve_fraction must be in [0, 1); got {self.reserve_fraction}.")


@dataclasses.dataclass(frozen=True)
class TableLoad:
    """One table as the planner sees it.

    Attributes:
      table: its config (rows, dim, dtype).
      lookups_per_sample: c_t, the capacities of every feature reading it, summed.
      outputs_per_sample: o_t, output values per sample: D per pooled feature, C x D per
        sequence feature.
      id_bytes: bytes sent per lookup (an id, and a weight if a weighted feature reads it).
    """

    table: TableConfig
    lookups_per_sample: int
    outputs_per_sample: int
    id_bytes: int

    @classmethod
    def of(cls, table: TableConfig, features: Sequence[FeatureConfig]) -> "TableLoad":
        readers = [feature for feature in features if feature.table == table.name]
        weighted = any(feature.weighted for feature in readers)
        return cls(
            table=table,
            lookups_per_sample=sum(feature.capacity for feature in readers),
            outputs_per_sample=sum(
                table.dim * (feature.capacity if feature.pooling == "none" else 1)
                for feature in readers
            ),
            id_bytes=ID_BYTES + (WEIGHT_BYTES if weighted else 0),
        )


@dataclasses.dataclass(frozen=True)
class DeviceCost:
    """One device's estimated seconds per batch, by cause."""

    lookup_s: float = 0.0
    intra_host_s: float = 0.0
    inter_host_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.lookup_s + self.intra_host_s + self.inter_host_s

    def __add__(self, other: "DeviceCost") -> "DeviceCost":
        return DeviceCost(
            self.lookup_s + other.lookup_s,
            self.intra_host_s + other.intra_host_s,
            self.inter_host_s + other.inter_host_s,
        )


@dataclasses.dataclass(frozen=True)
class Planned:
    """A plan with what it costs: bytes and estimated seconds per batch on each device."""

    plan: ShardingPlan
    tables: tuple[TableConfig, ...]
    batch_size: int
    memory_per_device: int
    usable_per_device: int
    device_bytes: tuple[int, ...]
    device_costs: tuple[DeviceCost, ...]
    table_costs: dict[str, DeviceCost]
    cost_model: CostModel

    @property
    def step_s(self) -> float:
        """The busiest device's estimated seconds per batch."""
        return max(cost.total_s for cost in self.device_costs)


def _traffic_cost(
    mesh: MeshShape, device: int, peers: dict[int, float], model: CostModel
) -> DeviceCost:
    """Seconds for `device` to exchange {peer: bytes} (sent or received, whichever it is)."""
    intra = inter = 0.0
    for peer, size in peers.items():
        if peer == device:
            continue
        if mesh.host_of(peer) == mesh.host_of(device):
            intra += size
        else:
            inter += size
    return DeviceCost(
        intra_host_s=intra / model.intra_host_bytes_per_s,
        inter_host_s=inter / model.inter_host_bytes_per_s,
    )


def table_costs(
    load: TableLoad, table_plan: TablePlan, mesh: MeshShape, batch_size: int, model: CostModel
) -> dict[int, DeviceCost]:
    """{device: estimated seconds per batch this table adds to it} under `table_plan`."""
    devices = range(mesh.num_devices)
    per_device = batch_size / mesh.num_devices  # b
    row_bytes = load.table.row_bytes
    ids_per_device = per_device * load.lookups_per_sample * load.id_bytes  # b c i
    outputs_per_device = per_device * load.outputs_per_sample * OUTPUT_BYTES  # b o 4
    costs = {device: DeviceCost() for device in devices}

    def add(device: int, cost: DeviceCost) -> None:
        costs[device] = costs[device] + cost

    def gather(rows: float, row_bytes: float) -> DeviceCost:
        read = rows * max(row_bytes, model.min_row_read_bytes)
        return DeviceCost(lookup_s=read / model.gather_bytes_per_s)

    kind = table_plan.sharding
    shards = table_plan.shards
    if kind is ShardingType.DATA_PARALLEL:
        for device in devices:
            add(device, gather(per_device * load.lookups_per_sample, row_bytes))
        return costs
    if kind in (ShardingType.TABLE_WISE, ShardingType.COLUMN_WISE):
        for shard in shards:
            fraction = shard.dim / load.table.dim
            add(shard.device, gather(batch_size * load.lookups_per_sample, row_bytes * fraction))
            # The owner receives every device's ids and sends back every device's pooled piece.
            peers = {d: ids_per_device + outputs_per_device * fraction for d in devices}
            add(shard.device, _traffic_cost(mesh, shard.device, peers, model))
            for device in devices:  # and each device sends its ids, receives its piece
                peer = {shard.device: ids_per_device + outputs_per_device * fraction}
                add(device, _traffic_cost(mesh, device, peer, model))
        return costs
    owners = [shard.device for shard in shards]
    for shard in shards:
        rows_here = batch_size * load.lookups_per_sample / len(shards)  # uniform ids assumed
        add(shard.device, gather(rows_here, row_bytes))
        # Every device's ids arrive (static shapes: the whole bag, masked to this block).
        add(
            shard.device,
            _traffic_cost(mesh, shard.device, dict.fromkeys(devices, ids_per_device), model),
        )
    for device in devices:
        add(device, _traffic_cost(mesh, device, dict.fromkeys(owners, ids_per_device), model))
    if kind is ShardingType.ROW_WISE:
        # Reduce-scatter of [B, o] partial sums as an all-to-all: each device's block of b
        # samples to that device (across hosts for the other hosts' devices).
        partial = batch_size * load.outputs_per_sample * OUTPUT_BYTES
        for device in devices:
            blocks = dict.fromkeys(devices, partial / mesh.num_devices)
            add(device, _traffic_cost(mesh, device, blocks, model))
        return costs
    # Table-row-wise: reduce-scatter inside the host (an all-to-all of 1 / L of the partial sums
    # to each other device of the host), then one all-to-all of pooled rows across hosts (each
    # host device sends H slices of b rows).
    partial = batch_size * load.outputs_per_sample * OUTPUT_BYTES
    local = mesh.devices_per_host
    for device in owners:
        add(device, _traffic_cost(mesh, device, dict.fromkeys(owners, partial / local), model))
        same_local = [d for d in devices if d % local == device % local]
        add(
            device,
            _traffic_cost(mesh, device, dict.fromkeys(same_local, outputs_per_device), model),
        )
    for device in devices:
        owner = owners[device % local]
        add(device, _traffic_cost(mesh, device, {owner: outputs_per_device}, model))
    return costs


def _candidates(
    load: TableLoad, mesh: MeshShape, order: Sequence[int], model: CostModel
) -> list[TablePlan]:
    """The placements considered for one table; `order`: devices, least loaded first."""
    table = load.table
    out = []
    if table.num_bytes <= model.data_parallel_max_bytes:
        out.append(sharding.data_parallel(table, mesh))
    out += [sharding.table_wise(table, device) for device in range(mesh.num_devices)]
    for pieces in (2, 4) if sharding.column_wise_allowed(table) else ():
        if pieces <= mesh.num_devices and table.dim % pieces == 0 and table.dim // pieces >= 16:
            out.append(sharding.column_wise(table, sorted(order[:pieces])))
    if mesh.num_devices > 1 and table.num_rows >= mesh.num_devices:
        out.append(sharding.row_wise(table, mesh))
    if mesh.devices_per_host > 1 and table.num_rows >= mesh.devices_per_host:
        out += [sharding.table_row_wise(table, host, mesh) for host in range(mesh.hosts)]
    return out


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB"


def plan_tables(
    tables: Sequence[TableConfig],
    features: Sequence[FeatureConfig],
    *,
    batch_size: int,
    mesh: MeshShape,
    memory_per_device: int,
    cost_model: CostModel = CostModel(),
) -> Planned:
    """A plan for `tables` over `mesh` that fits `memory_per_device` less the reserve.

    Raises PlanError naming the shortfall when the tables cannot fit.
    """
    if batch_size <= 0 or batch_size % mesh.num_devices:
        raise ValueError(
            f"The batch is split evenly over the {mesh.num_devices} devices; batch_size "
            f"{batch_size} must be a positive multiple of {mesh.num_devices}."
        )
    usable = int(memory_per_device * (1 - cost_model.reserve_fraction))
    total = sum(table.num_bytes for table in tables)
    if total > usable * mesh.num_devices:
        raise PlanError(
            f"The {len(tables)} tables hold {_gib(total)}; {mesh.num_devices} devices of "
            f"{_gib(memory_per_device)} with a {cost_model.reserve_fraction:.0%} reserve hold "
            f"{_gib(usable * mesh.num_devices)}: short by {_gib(total - usable * mesh.num_devices)}"
            f" ({total - usable * mesh.num_devices:,} bytes)."
        )
    loads = sorted(
        (TableLoad.of(table, features) for table in tables),
        key=lambda load: (-load.table.num_bytes, load.table.name),
    )
    held = [0] * mesh.num_devices
    costs = [DeviceCost()] * mesh.num_devices
    placed: dict[str, TablePlan] = {}
    table_costs_out: dict[str, DeviceCost] = {}
    for load in loads:
        order = sorted(range(mesh.num_devices), key=lambda d: (costs[d].total_s, held[d], d))
        best, best_key, shortfall = None, None, None
        for candidate in _candidates(load, mesh, order, cost_model):
            added = candidate.device_bytes(load.table)
            new_held = [held[d] + added.get(d, 0) for d in range(mesh.num_devices)]
            over = max(size - usable for size in new_held)
            if over > 0:
                shortfall = over if shortfall is None else min(shortfall, over)
                continue
            extra = table_costs(load, candidate, mesh, batch_size, cost_model)
            new_costs = [costs[d] + extra[d] for d in range(mesh.num_devices)]
            key = (
                max(cost.total_s for cost in new_costs),
                sum(cost.total_s for cost in new_costs),
                max(new_held),
            )
            if best_key is None or key < best_key:
                best, best_key = candidate, key
        if best is None:
            raise PlanError(
                f"Table {load.table.name!r} ({_gib(load.table.num_bytes)}) fits no placement: "
                f"even its best-spread one leaves a device short by {_gib(shortfall)} "
                f"({shortfall:,} bytes) with {_gib(usable)} usable per device "
                f"({_gib(memory_per_device)} less a {cost_model.reserve_fraction:.0%} reserve) and "
                f"the tables placed before it; free per device: "
                f"{[_gib(usable - size) for size in held]}."
            )
        extra = table_costs(load, best, mesh, batch_size, cost_model)
        for device, size in best.device_bytes(load.table).items():
            held[device] += size
        costs = [costs[d] + extra[d] for d in range(mesh.num_devices)]
        placed[load.table.name] = best
        table_costs_out[load.table.name] = _max_cost(extra.values())
    plan = ShardingPlan(mesh, tuple(placed[table.name] for table in tables))
    sharding.check_plan(plan, tables)
    return Planned(
        plan=plan,
        tables=tuple(tables),
        batch_size=batch_size,
        memory_per_device=memory_per_device,
        usable_per_device=usable,
        device_bytes=tuple(held),
        device_costs=tuple(costs),
        table_costs=table_costs_out,
        cost_model=cost_model,
    )


def _max_cost(costs) -> DeviceCost:
    """The cost on the device where a table costs most."""
    return max(costs, key=lambda cost: cost.total_s)


def describe_shards(table_plan: TablePlan, mesh: MeshShape) -> str:
    """e.g. "device 3", "devices 0-7, rows of 5,000,000", "host 1 (devices 2-3)"."""
    shards = table_plan.shards
    devices = [shard.device for shard in shards]
    span = f"{devices[0]}-{devices[-1]}" if len(devices) > 1 else f"{devices[0]}"
    kind = table_plan.sharding
    if kind is ShardingType.TABLE_WISE:
        return f"device {span}"
    if kind is ShardingType.DATA_PARALLEL:
        return f"all {len(devices)} devices"
    if kind is ShardingType.COLUMN_WISE:
        columns = ", ".join(f"{s.columns[0]}:{s.columns[1]}@{s.device}" for s in shards)
        return f"columns {columns}"
    block = max(shard.num_rows for shard in shards)
    where = f"devices {span}"
    if kind is ShardingType.TABLE_ROW_WISE:
        where = f"host {mesh.host_of(devices[0])} (devices {span})"
    return f"{where}, rows in blocks of {block:,}"


def format_plan(planned: Planned, features: Sequence[FeatureConfig]) -> str:
    """The plan as a table, then each device's bytes and estimated costs."""
    mesh = planned.plan.mesh
    tables = {table.name: table for table in planned.tables}
    lines = [
        f"{'table':<14} {'rows':>12} {'dim':>4} {'GiB':>7} {'ids/sample':>10}  "
        f"{'sharding':<15} {'est. ms':>8}  placement"
    ]
    for table_plan in planned.plan.tables:
        name = table_plan.table
        table = tables[name]
        lookups = sum(feature.capacity for feature in features if feature.table == name)
        lines.append(
            f"{name:<14} {table.num_rows:>12,} {table.dim:>4} {table.num_bytes / 2**30:>7.3f} "
            f"{lookups:>10}  {table_plan.sharding.value:<15} "
            f"{planned.table_costs[name].total_s * 1e3:>8.3f}  {describe_shards(table_plan, mesh)}"
        )
    lines += [
        "",
        f"{'device':>6} {'host':>4} {'table GiB':>10} {'free GiB':>9} {'lookup ms':>10} "
        f"{'in-host ms':>10} {'cross-host ms':>13} {'total ms':>9}",
    ]
    for device, (size, cost) in enumerate(
        zip(planned.device_bytes, planned.device_costs, strict=True)
    ):
        lines.append(
            f"{device:>6} {mesh.host_of(device):>4} {size / 2**30:>10.3f} "
            f"{(planned.usable_per_device - size) / 2**30:>9.3f} {cost.lookup_s * 1e3:>10.3f} "
            f"{cost.intra_host_s * 1e3:>10.3f} {cost.inter_host_s * 1e3:>13.3f} "
            f"{cost.total_s * 1e3:>9.3f}"
        )
    return "\n".join(lines)


def parse_bytes(text: str) -> int:
    """'24GiB', '512MiB', '24GB', '1e9' -> bytes; raises ValueError naming the accepted units."""
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "kb": 1e3, "mb": 1e6}
    units |= {"gb": 1e9, "tb": 1e12, "b": 1}
    cleaned = text.strip().lower().replace(" ", "")
    for unit in sorted(units, key=len, reverse=True):
        if cleaned.endswith(unit):
            number = cleaned.removesuffix(unit)
            break
    else:
        unit, number = "b", cleaned
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise ValueError(
            f"Cannot read {text!r} as a size; expected a number with a unit such as 24GiB, "
            "512MiB, 24GB or 1e9 (bytes)."
        ) from None
    if value <= 0 or not math.isfinite(value):
        raise ValueError(f"A size must be positive; got {text!r}.")
    return int(value)


def plan_to_json(planned: Planned) -> dict[str, object]:
    """The plan, its bytes and costs and the assumptions, for results.json."""
    return {
        "mesh": {
            "hosts": planned.plan.mesh.hosts,
            "devices_per_host": planned.plan.mesh.devices_per_host,
        },
        "batch_size": planned.batch_size,
        "memory_per_device": planned.memory_per_device,
        "usable_per_device": planned.usable_per_device,
        "cost_model": dataclasses.asdict(planned.cost_model),
        "estimated_step_ms": planned.step_s * 1e3,
        "tables": [
            {
                "table": table_plan.table,
                "sharding": table_plan.sharding.value,
                "shards": [dataclasses.asdict(shard) for shard in table_plan.shards],
                "estimated_ms_on_busiest_device": planned.table_costs[table_plan.table].total_s
                * 1e3,
            }
            for table_plan in planned.plan.tables
        ],
        "devices": [
            {
                "device": device,
                "table_bytes": size,
                **{f"{k}_ms": v * 1e3 for k, v in dataclasses.asdict(cost).items()},
            }
            for device, (size, cost) in enumerate(
                zip(planned.device_bytes, planned.device_costs, strict=True)
            )
        ],
    }
