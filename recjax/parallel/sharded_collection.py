"""The sparse arch over a device mesh: each sharding type an explicit `shard_map` program.

Input  a `Features` batch split over the mesh's devices by samples (each device holds b = B / P
       samples of ids [b, sum C], lengths [b, K], weights).
Output {feature name: [B, D] pooled rows} (or [B, S, D] rows of a sequence feature), split over
       the devices by samples, equal to `EmbeddingCollection`'s within float32 rounding.

Inside `shard_map`, each device runs, per exchange group (see `recjax.parallel.layout`):

  all_to_all       (table-wise tables and column-wise pieces) ids -> all-to-all -> the owner pools
                   every sample's bags of its tables with recjax's lowering -> all-to-all of the
                   pooled [b, d] rows back to the samples' devices; column pieces concatenated.
  row_wise         each id sent to the device owning its row (all-to-all), each device pools its
                   partial sums for the whole batch [B, d], and a reduce-scatter (an all-to-all of
                   each device's [b, d] block to that device, then a sum) leaves each device its
                   own samples' sums.
  table_row_wise   ids to the devices of the table's host (all-to-all over the whole mesh), partial
                   sums reduce-scattered the same way inside the host (over "local"), then one
                   all-to-all across hosts (over "host") returns the pooled rows: only pooled
                   [b, d] rows cross hosts.
  data_parallel    looked up locally in a replicated copy; no communication.

No table, and no unpooled row of a pooled feature, ever leaves its device: the automatic
partitioner, given a sharded gather, all-gathers the table or all-reduces the unpooled rows.
Mesh axes: "host" x "local" (`DEVICE_AXES`), the batch split over both.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from recjax.inputs.features import FeatureConfig, FeatureLayout, Features, TableConfig
from recjax.layers.embedding_bag import LOWERINGS, resolve_lowering
from recjax.layers.quantization import RowFormat
from recjax.parallel import layout as layouts
from recjax.parallel.sharding import MeshShape, ShardingPlan, check_plan

HOST_AXIS = "host"
LOCAL_AXIS = "local"
DEVICE_AXES = (HOST_AXIS, LOCAL_AXIS)

# (table index, table, rows, columns) -> [rows, columns] float32 values of that block.
ShardValues = Callable[[int, TableConfig, tuple[int, int], tuple[int, int]], np.ndarray]


class MemoryBudgetError(RuntimeError):
    """A process was asked to hold more table bytes than its budget allows."""


def device_mesh(shape: MeshShape, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The (host, local) mesh over the first `shape.num_devices` devices (default: all of
    `jax.devices()`, which across processes lists process 0's devices first)."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) < shape.num_devices:
        raise ValueError(
            f"A {shape} mesh needs {shape.num_devices} devices; there are {len(devices)}."
        )
    return jax.make_mesh(
        (shape.hosts, shape.devices_per_host),
        DEVICE_AXES,
        axis_types=(AxisType.Auto, AxisType.Auto),
        devices=devices[: shape.num_devices],
    )


def process_devices(mesh: Mesh) -> tuple[int, ...]:
    """The flat mesh indices of this process's devices."""
    me = jax.process_index()
    return tuple(i for i, device in enumerate(mesh.devices.flat) if device.process_index == me)


def _reduce_scatter(blocks: jax.Array, axes, axis: int) -> jax.Array:
    """Sums `blocks` over the devices of `axes` and leaves each device its own block.

    `blocks` has one block per device of `axes` along `axis`; the result keeps that axis with
    length 1. The same bytes leave each device as in a ring reduce-scatter. Not `psum_scatter`:
    across processes (XLA:CPU over Gloo, jaxlib 0.10.2) it intermittently returned a wrong sum for
    the last sample of the first device's block; in the same stress runs this form never did
    (docs/design/sharding.md, "Why the reduce-scatter is an all-to-all").
    """
    received = jax.lax.all_to_all(blocks, axes, axis, axis)  # block `axis`: the source device
    return received.sum(axis=axis, keepdims=True)


class ShardedEmbeddingCollection(nnx.Module):
    """`EmbeddingCollection`'s lookups with the tables sharded over `mesh` as `plan` says.

    Each process builds only the shards on its own devices (`shard_values` makes each block), and
    refuses, before allocating, to hold more than `budget_bytes` of buffers.

    Example:
        >>> mesh = device_mesh(MeshShape(1, 4))
        >>> plan = uniform_plan(config.tables, "row_wise", MeshShape(1, 4))
        >>> sharded = ShardedEmbeddingCollection(config.tables, config.features, plan, mesh,
        ...     lowering="pooling_loop", shard_values=lambda t, table, rows, cols: ...)
        >>> sharded(batch)["clicked"].shape   # batch of 8, split 2 per device
        (8, 16)
    """

    def __init__(
        self,
        tables: Sequence[TableConfig],
        features: Sequence[FeatureConfig],
        plan: ShardingPlan,
        mesh: Mesh,
        *,
        lowering: str,
        shard_values: ShardValues,
        budget_bytes: int | None = None,
    ):
        check_plan(plan, tables)
        expected = {HOST_AXIS: plan.mesh.hosts, LOCAL_AXIS: plan.mesh.devices_per_host}
        if dict(mesh.shape) != expected:
            raise ValueError(f"The plan is for a {expected} mesh; got {dict(mesh.shape)}.")
        self.lowering, _ = resolve_lowering(lowering)
        self.layout = FeatureLayout.of(features)
        self.features = tuple(features)
        self.plan = plan
        self.mesh = mesh
        self.shard_layout = layouts.sharded_layout(plan, tables, features)
        local_devices = process_devices(mesh)
        self.process_bytes = self.shard_layout.device_bytes * len(local_devices)
        if budget_bytes is not None and self.process_bytes > budget_bytes:
            raise MemoryBudgetError(
                f"Process {jax.process_index()} would hold {self.process_bytes:,} bytes of table "
                f"shards on its {len(local_devices)} device(s), over its budget of "
                f"{budget_bytes:,} bytes by {self.process_bytes - budget_bytes:,}."
            )
        table_index = {table.name: index for index, table in enumerate(tables)}
        by_name = {table.name: table for table in tables}

        def block(buffer: layouts.BufferLayout, device: int) -> np.ndarray:
            row_format = buffer.row_format
            stored = np.zeros(row_format.shape(buffer.rows_per_device), row_format.storage_dtype)
            for region in buffer.regions:
                if region.device != device:
                    continue
                shard = plan.of(region.table).shards[region.shard]
                values = shard_values(
                    table_index[region.table], by_name[region.table], shard.rows, shard.columns
                )
                # Rounded or quantized row by row, as the unsharded table's rows are.
                stored[region.offset : region.offset + shard.num_rows] = row_format.encode_on_host(
                    values
                )
            return stored

        buffers = {}
        for buffer in self.buffers:
            if buffer.replicated:
                values = block(buffer, 0)  # every device's copy is the same
                array = jax.make_array_from_callback(
                    values.shape, NamedSharding(mesh, P()), lambda index, v=values: v[index]
                )
            else:
                rows = buffer.rows_per_device
                array = jax.make_array_from_callback(
                    (plan.mesh.num_devices * rows, buffer.row_format.width),
                    NamedSharding(mesh, P(DEVICE_AXES)),
                    lambda index, b=buffer, n=rows: block(b, (index[0].start or 0) // n),
                )
            buffers[buffer.name] = nnx.Param(array)
        self.tables = nnx.Dict(buffers)

    @property
    def buffers(self) -> tuple[layouts.BufferLayout, ...]:
        return self.shard_layout.buffers

    def table_buffers(self) -> dict[str, jax.Array]:
        """{buffer name: global sharded [P * N, d] (replicated: [N, d]) array}."""
        return {name: param[...] for name, param in self.tables.items()}

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        if batch.layout != self.layout:
            raise ValueError(
                f"The batch's sparse features {list(batch.layout.names)} (capacities "
                f"{list(batch.layout.capacities)}) are not the model's {list(self.layout.names)} "
                f"(capacities {list(self.layout.capacities)})."
            )
        num_devices = self.plan.mesh.num_devices
        if batch.ids.shape[0] % num_devices:
            raise ValueError(
                f"A sharded lookup splits the batch evenly over {num_devices} devices; batch size "
                f"{batch.ids.shape[0]} is not a multiple of {num_devices}."
            )
        inputs = {"ids": batch.ids, "lengths": batch.lengths}
        if batch.weights is not None:
            inputs["weights"] = batch.weights
        buffers = self.table_buffers()
        buffer_specs = {
            buffer.name: P() if buffer.replicated else P(DEVICE_AXES) for buffer in self.buffers
        }
        program = jax.shard_map(
            self._device_program,
            mesh=self.mesh,
            in_specs=(buffer_specs, {name: P(DEVICE_AXES) for name in inputs}),
            out_specs={name: P(DEVICE_AXES) for name in self.layout.names},
        )
        return program(buffers, inputs)

    # --- what each device runs -------------------------------------------------------------------

    def _feature_ids(self, ids: jax.Array, feature: int) -> jax.Array:
        column = self.layout.columns[feature]
        return ids[:, column : column + self.layout.capacities[feature]]

    def _valid(self, lengths: jax.Array, feature: int) -> jax.Array | None:
        """[b, C] positions that hold ids, or None when all do (a full pooled bag)."""
        config = self.features[feature]
        if config.pooling != "none" and config.fixed_length:
            return None
        positions = jnp.arange(config.capacity, dtype=jnp.int32)[None, :]
        return positions < lengths[:, feature, None]

    def _routed_ids(
        self, routes: Sequence[layouts.Route], group: layouts.ExchangeGroup, inputs
    ) -> jax.Array:
        """[b, slots, C] rows of one destination's buffer; masked ids and padding slots -> row 0."""
        blocks = []
        for route in routes:
            ids = self._feature_ids(inputs["ids"], route.feature)
            keep = self._valid(inputs["lengths"], route.feature)
            if not route.full_rows:
                inside = (ids >= route.row_start) & (ids < route.row_stop)
                keep = inside if keep is None else keep & inside
            local = ids + (route.offset - route.row_start)
            blocks.append(local if keep is None else jnp.where(keep, local, layouts.ZERO_ROW))
        # A slice of the ids (not jnp.full) keeps the padding varying over the mesh like them.
        padding = jnp.full_like(inputs["ids"][:, : group.capacity], layouts.ZERO_ROW)
        blocks += [padding] * (group.slots - len(routes))
        return jnp.stack(blocks, axis=1)

    def _routed_weights(
        self, routes: Sequence[layouts.Route], group: layouts.ExchangeGroup, inputs
    ) -> jax.Array:
        """[b, slots, C] the weights of each slot's ids (padding slots: zeros)."""
        blocks = [self._feature_ids(inputs["weights"], route.feature) for route in routes]
        padding = jnp.zeros_like(inputs["weights"][:, : group.capacity])
        blocks += [padding] * (group.slots - len(routes))
        return jnp.stack(blocks, axis=1)

    def _lookup(
        self, buffer: jax.Array, row_format: RowFormat, ids: jax.Array, weights, sequence: bool
    ) -> jax.Array:
        """[N, slots, d] pooled float32 sums (or [N, slots, C, d] rows) of [N, slots, C] local
        rows of `buffer`, stored as `row_format` says."""
        if sequence:
            return row_format.decode(jnp.take(buffer, ids, axis=0, mode="clip"))
        # float32 buffers are looked up as the unsharded collection looks them up (no format).
        stored = {} if row_format.dtype == "float32" else {"row_format": row_format}
        return LOWERINGS[self.lowering](
            buffer, ids, None, weights, row_offsets=(0,) * ids.shape[1], mean=False, **stored
        )

    def _exchange(
        self, group: layouts.ExchangeGroup, buffer: jax.Array, row_format: RowFormat, inputs
    ) -> jax.Array:
        """Sends a group's ids, looks them up where their rows live, and brings the results back.

        Returns [sources, b, slots, ...]: source 0 for row-wise groups, the owning device for
        all-to-all groups, the owning host for table-row-wise groups.
        """
        hosts, local = self.plan.mesh.hosts, self.plan.mesh.devices_per_host
        num_devices = hosts * local
        send = jnp.stack([self._routed_ids(r, group, inputs) for r in group.routes])
        received = jax.lax.all_to_all(send, DEVICE_AXES, 0, 0)  # [P (source), b, slots, C]
        batch = num_devices * received.shape[1]
        weights = None
        if group.weighted:
            send_weights = jnp.stack([self._routed_weights(r, group, inputs) for r in group.routes])
            weights = jax.lax.all_to_all(send_weights, DEVICE_AXES, 0, 0)
            weights = weights.reshape(batch, *weights.shape[2:])
        looked_up = self._lookup(
            buffer,
            row_format,
            received.reshape(batch, *received.shape[2:]),
            weights,
            group.sequence,
        )  # [B, slots, ...]: every sample's bags of this device's slots
        if group.kind == layouts.ALL_TO_ALL:
            per_source = looked_up.reshape(num_devices, -1, *looked_up.shape[1:])
            return jax.lax.all_to_all(per_source, DEVICE_AXES, 0, 0)  # [P (owner), b, ...]
        if group.kind == layouts.ROW_WISE:
            per_owner = looked_up.reshape(num_devices, -1, *looked_up.shape[1:])
            return _reduce_scatter(per_owner, DEVICE_AXES, 0)  # [1, b, ...]
        per_source = looked_up.reshape(hosts, local, -1, *looked_up.shape[1:])
        in_host = _reduce_scatter(per_source, LOCAL_AXIS, 1)
        # [H (sources' host), 1, b, ...] -> [H (owner host), 1, b, ...] for this device's samples
        return jax.lax.all_to_all(in_host, HOST_AXIS, 0, 0)[:, 0]

    def _device_program(self, buffers: dict[str, jax.Array], inputs) -> dict[str, jax.Array]:
        pieces: dict[int, list[tuple[int, jax.Array]]] = {}
        for group in self.shard_layout.groups:
            buffer = buffers[group.buffer]
            row_format = self.shard_layout.buffer(group.buffer).row_format
            if group.kind == layouts.DATA_PARALLEL:
                # The replicated copy is the same on every device; marking it varying like the ids
                # lets loop lowerings (pooling_loop) start their carry from it.
                buffer = jax.lax.pcast(buffer, DEVICE_AXES, to="varying")
                routes = group.routes[0]
                weights = None
                if group.weighted:
                    weights = self._routed_weights(routes, group, inputs)
                ids = self._routed_ids(routes, group, inputs)
                results = self._lookup(buffer, row_format, ids, weights, group.sequence)[None]
            else:
                results = self._exchange(group, buffer, row_format, inputs)
            for piece in group.pieces:
                pieces.setdefault(piece.feature, []).append(
                    (piece.column_start, results[piece.source, :, piece.slot])
                )
        out = {}
        for index, feature in enumerate(self.features):
            ordered = [value for _, value in sorted(pieces[index], key=lambda item: item[0])]
            value = ordered[0] if len(ordered) == 1 else jnp.concatenate(ordered, axis=-1)
            if feature.pooling == "mean":
                if feature.fixed_length:
                    value = value / feature.capacity
                else:
                    count = jnp.maximum(inputs["lengths"][:, index], 1).astype(value.dtype)
                    value = value / count[:, None]
            out[feature.name] = value
        return out
