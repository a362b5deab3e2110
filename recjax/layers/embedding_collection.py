"""The sparse arch of every family: tables bound to features, stacked per (dim, dtype) group.

Shapes: `B` batch, `K` sparse features, `T` features pooled in one call, `C` capacity, `S` sequence
length, `D` embedding dim, `N` rows of a stacked buffer.

Tables of one (dim, dtype, row alignment) share one stacked buffer (FBGEMM's table-batched
layout), a parameter named after the group ("d64_float32", "d64_int8", "d32_int8_a64"): [N, D]
float32, float16 or bfloat16, or [N, W] uint8 row-wise quantized rows
(`recjax.layers.quantization.RowFormat`, whose bytes the parameter's shape and dtype count
exactly). Lookups read every format as float32 and pool in float32.

The features are looked up group by group: pooled features of one group, capacity, pooling and
weighting go to one lowering call as a [B, T, C] block; sequence features are gathered unpooled.
When those features sit next to each other in the batch's id block (as a DLRM's all do), the block
is a reshape of it, not a copy.
"""

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.inputs.features import FeatureConfig, FeatureLayout, Features, TableConfig
from recjax.layers.embedding_bag import LOWERINGS, lookup_sequence, resolve_lowering
from recjax.layers.quantization import RowFormat


def group_name(table: TableConfig) -> str:
    """The stacked buffer a table lives in, e.g. "d64_float32", or "d32_int8_a64" for rows padded
    to 64 bytes."""
    padding = f"_a{table.row_alignment}" if table.row_alignment > 1 else ""
    return f"d{table.dim}_{table.dtype}{padding}"


def row_format_of(table: TableConfig) -> RowFormat:
    """How the rows of `table` (and of its group) are stored."""
    return RowFormat(table.dtype, table.dim, table.row_alignment)


@dataclasses.dataclass(frozen=True)
class PooledCall:
    """Features pooled by one lowering call: same group, capacity, pooling, weighting and length.

    Attributes:
      group: the stacked buffer.
      features: their names, in batch order.
      columns: each feature's first column in the batch's id block.
      capacity: C, shared by all of them.
      row_offsets: the first row of each feature's table in the group's buffer.
      mean: mean pooling (else sum).
      weighted: scale rows by the batch's per-id weights.
      fixed_length: every bag is full, so no lengths are passed (no mask).
    """

    group: str
    features: tuple[str, ...]
    columns: tuple[int, ...]
    capacity: int
    row_offsets: tuple[int, ...]
    mean: bool
    weighted: bool
    fixed_length: bool

    @property
    def contiguous(self) -> bool:
        """Whether the features' columns form one block [c0, c0 + T * C) of the id block."""
        return all(
            column == self.columns[0] + index * self.capacity
            for index, column in enumerate(self.columns)
        )


def _random_table(key: jax.Array, num_rows: int, dim: int) -> jax.Array:
    scale = 1.0 / np.sqrt(num_rows)
    return jax.random.uniform(key, (num_rows, dim), jnp.float32, -scale, scale)


@functools.partial(jax.jit, donate_argnums=0, static_argnums=(3, 4))
def _write_random_table(
    stacked: jax.Array, key: jax.Array, first_row: jax.Array, num_rows: int, row_format: RowFormat
) -> jax.Array:
    block = row_format.encode(_random_table(key, num_rows, row_format.dim))
    return jax.lax.dynamic_update_slice(stacked, block, (first_row, 0))


def empty_stacked_tables(tables: Sequence[TableConfig]) -> jax.Array:
    """A zero-filled stacked buffer [N, W] for the tables of one group, allocated on the device."""
    row_format = row_format_of(tables[0])
    shape = row_format.shape(sum(table.num_rows for table in tables))
    return jax.jit(lambda: jnp.zeros(shape, row_format.storage_dtype))()


def init_stacked_tables(
    key: jax.Array, tables: Sequence[TableConfig], table_indices: Sequence[int]
) -> jax.Array:
    """One group's stacked [N, W] buffer, table t uniform(-1/sqrt(R_t), 1/sqrt(R_t)).

    This is the reference DLRM's initialization; table t draws from `fold_in(key, table_indices[t])`
    (its index among all of the model's tables), so a table's values do not depend on the others,
    nor on its dtype: a table of another dtype holds the same float32 values rounded or quantized
    (`RowFormat.encode`), exactly what post-training quantization of the float32 table gives.
    The buffer is allocated once on the device and filled one table at a time by a jitted update
    that donates it: the peak is the buffer plus one table's random bits, values and block, and no
    copy passes through the host.
    """
    row_format = row_format_of(tables[0])
    stacked = empty_stacked_tables(tables)
    first_row = 0
    for table, index in zip(tables, table_indices, strict=True):
        stacked = _write_random_table(
            stacked,
            jax.random.fold_in(key, index),
            jnp.int32(first_row),
            table.num_rows,
            row_format,
        )
        first_row += table.num_rows
    return stacked


class EmbeddingCollection(nnx.Module):
    """Embedding lookups for every sparse feature of a batch, by name.

    Input  a `Features` batch laid out as `features` (ids [B, sum C], lengths [B, K]).
    Output {feature name: [B, D] pooled rows} for pooled features, and {feature name: [B, S, D]
    rows, zeros past the length} for sequence features (pooling "none").

    Ids outside a table's range are clamped by the gather (XLA's semantics) and would read a row of
    another table; `recjax.inputs.checks` detects them, and the predictors reject such batches.

    Example:
        >>> tables = [TableConfig("items", 1000, 16)]
        >>> features = [FeatureConfig("clicked", "items", capacity=20),
        ...             FeatureConfig("candidate", "items", capacity=1)]
        >>> embeddings = EmbeddingCollection(tables, features, lowering="pooling_loop",
        ...                                  rngs=nnx.Rngs(0))
        >>> {k: v.shape for k, v in embeddings(batch).items()}
        {'clicked': (8, 16), 'candidate': (8, 16)}
    """

    def __init__(
        self,
        tables: Sequence[TableConfig],
        features: Sequence[FeatureConfig],
        *,
        lowering: str,
        rngs: nnx.Rngs,
    ):
        if not tables or not features:
            raise ValueError("EmbeddingCollection needs at least one table and one feature.")
        self.lowering, _ = resolve_lowering(lowering)
        self.layout = FeatureLayout.of(features)
        table_by_name = {table.name: table for table in tables}
        groups: dict[str, list[int]] = {}
        for index, table in enumerate(tables):
            groups.setdefault(group_name(table), []).append(index)
        self.table_rows: dict[str, int] = {table.name: table.num_rows for table in tables}
        self.table_group: dict[str, str] = {table.name: group_name(table) for table in tables}
        self.row_formats: dict[str, RowFormat] = {
            group_name(table): row_format_of(table) for table in tables
        }
        self.table_offset: dict[str, int] = {}
        key = rngs.params()
        buffers = {}
        for name, indices in groups.items():
            group_tables = [tables[index] for index in indices]
            offsets = np.cumsum([0] + [table.num_rows for table in group_tables])
            if offsets[-1] >= 2**31:
                raise ValueError(
                    f"The tables of group {name} hold {offsets[-1]} rows together; int32 ids "
                    f"address at most {2**31 - 1}."
                )
            for table, offset in zip(group_tables, offsets[:-1], strict=True):
                self.table_offset[table.name] = int(offset)
            buffers[name] = nnx.Param(init_stacked_tables(key, group_tables, indices))
        self.tables = nnx.Dict(buffers)
        self.pooled_calls = self._plan_pooled_calls(features, table_by_name)
        self.sequence_features = tuple(
            (feature.name, feature.table) for feature in features if feature.pooling == "none"
        )

    def _plan_pooled_calls(
        self, features: Sequence[FeatureConfig], table_by_name: dict[str, TableConfig]
    ) -> tuple[PooledCall, ...]:
        calls: dict[tuple, list[tuple[str, int, int]]] = {}
        for feature, column in zip(features, self.layout.columns, strict=True):
            if feature.pooling == "none":
                continue
            table = table_by_name[feature.table]
            key = (
                group_name(table),
                feature.capacity,
                feature.pooling == "mean",
                feature.weighted,
                feature.fixed_length,
            )
            calls.setdefault(key, []).append(
                (feature.name, column, self.table_offset[feature.table])
            )
        return tuple(
            PooledCall(
                group=group,
                features=tuple(name for name, _, _ in members),
                columns=tuple(column for _, column, _ in members),
                capacity=capacity,
                row_offsets=tuple(offset for _, _, offset in members),
                mean=mean,
                weighted=weighted,
                fixed_length=fixed_length,
            )
            for (group, capacity, mean, weighted, fixed_length), members in calls.items()
        )

    def table_buffers(self) -> dict[str, jax.Array]:
        """{group name: [N, W] stacked buffer} (`row_formats[group]` says how it stores rows)."""
        return {name: param[...] for name, param in self.tables.items()}

    def _block(self, array: jax.Array, call: PooledCall) -> jax.Array:
        """[B, T, C] columns of the calls' features from a [B, sum C] block."""
        batch = array.shape[0]
        if call.contiguous:
            first = call.columns[0]
            block = array[:, first : first + len(call.features) * call.capacity]
            return block.reshape(batch, len(call.features), call.capacity)
        return jnp.stack(
            [array[:, column : column + call.capacity] for column in call.columns], axis=1
        )

    def pool_call(self, call: PooledCall, batch: Features) -> jax.Array:
        """[B, T, D] pooled rows of one call's features."""
        lengths = None
        if not call.fixed_length:
            indices = [batch.layout.index(name) for name in call.features]
            lengths = batch.lengths[:, jnp.asarray(indices)]
        row_format = self.row_formats[call.group]
        # float32 groups are called as before formats existed (no row_format), so that every
        # lowering of the registry keeps working on them.
        format_argument = {} if row_format.dtype == "float32" else {"row_format": row_format}
        return LOWERINGS[self.lowering](
            self.tables[call.group][...],
            self._block(batch.ids, call),
            lengths,
            self._block(batch.weights, call) if call.weighted else None,
            row_offsets=call.row_offsets,
            mean=call.mean,
            **format_argument,
        )

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        if batch.layout != self.layout:
            raise ValueError(
                f"The batch's sparse features {list(batch.layout.names)} (capacities "
                f"{list(batch.layout.capacities)}) are not the model's {list(self.layout.names)} "
                f"(capacities {list(self.layout.capacities)})."
            )
        out: dict[str, jax.Array] = {}
        for call in self.pooled_calls:
            pooled = self.pool_call(call, batch)
            for index, name in enumerate(call.features):
                out[name] = pooled[:, index]
        for name, table in self.sequence_features:
            group = self.table_group[table]
            out[name] = lookup_sequence(
                self.tables[group][...],
                batch.ids_of(name),
                batch.lengths_of(name),
                self.table_offset[table],
                self.row_formats[group],
            )
        return {name: out[name] for name in self.layout.names}
