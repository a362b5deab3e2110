"""Embedding gradients without a dense table gradient: the lookups as an input of the loss.

Under `jax.grad`, the gradient of a gather is a scatter into zeros the size of the table (4 GB for
rmc2, per step). The train step never asks JAX for it. It runs the sparse arch *outside* the
differentiated function, takes the gradient of the loss with respect to the looked-up values
(the pooled [B, D] rows of each pooled feature, the [B, S, D] rows of each sequence feature, the
[B, T, D] output of each `pool_call`), and turns that into per-lookup row gradients here: the
transpose of each lookup, written out.

For a pooled feature with ids x[b, c] (c < C), per-id factor s[b, c] (the weight of a weighted
feature, 0 past the sample's length, divided by the length for mean pooling) and pooled output
p[b] = sum_c s[b, c] table[x[b, c]],

    d loss / d table[r] = sum over (b, c) with x[b, c] = r of s[b, c] * d loss / d p[b]

and for a sequence feature, the gradient of position (b, c) goes to row x[b, c] if c < length[b].
Repeated ids (within a bag, across samples, across features sharing a table) sum, as in the dense
gradient. `LookupGradient` holds these terms per call of the sparse arch, without forming them:
[B, T, C] rows and factors beside the [B, T, D] pooled gradient, so that an optimizer can apply
them one position at a time (`embedding_optimizers.sgd`) or sum them per row first
(`embedding_optimizers.rowwise_adagrad`).

This works through the family contract only: `model.sparse_arch` is an `EmbeddingCollection`,
and the model reads its tables through its two public reads, `sparse_arch(batch)` (every
feature's lookups) and `sparse_arch.pool_call(call, batch)` (one planned call, e.g. pointed at
Wide & Deep's wide tables or DeepFM's first-order tables). Which reads a model makes is recorded
once by tracing it abstractly with `RecordingSparseArch` in place of its sparse arch
(`SparseReads`); the step computes those reads outside the differentiated function
(`read_values`), and inside it `GivenLookups` stands in for the sparse arch and returns them.

Shapes: `B` batch, `T` features of one call, `C` capacity (ids per bag, or sequence length S),
`D` embedding dim, `N` rows of a stacked group buffer.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from recjax.inputs.features import FeatureLayout, Features
from recjax.layers.embedding_collection import EmbeddingCollection, PooledCall

Lookups = dict[str, jax.Array]


def is_table_buffer(path: tuple, value: object) -> bool:
    """nnx filter: the stacked embedding tables, `model.sparse_arch.tables[group]`."""
    return isinstance(value, nnx.Param) and tuple(path[:2]) == ("sparse_arch", "tables")


TABLES = is_table_buffer
DENSE = nnx.Param  # after TABLES: every other parameter
REST = ...  # after both: any other state (RNG counters, batch statistics)


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State, nnx.State]:
    """(graphdef, tables, dense parameters, other state) of a model of any family."""
    if not isinstance(getattr(model, "sparse_arch", None), EmbeddingCollection):
        raise ValueError(
            f"{type(model).__name__}: the family contract names the embedding lookups "
            f"`model.sparse_arch`, an EmbeddingCollection; got "
            f"{type(getattr(model, 'sparse_arch', None)).__name__}."
        )
    return nnx.split(model, TABLES, DENSE, REST)


@dataclasses.dataclass(frozen=True)
class SparseReads:
    """The reads of `model.sparse_arch` that one forward pass of a model makes (static).

    Attributes:
      lookups: whether it calls `sparse_arch(batch)`.
      pool_calls: the distinct `sparse_arch.pool_call(call, batch)` calls, in first-call order
        (a call made twice is one read: its value is given twice and its gradients sum).
    """

    lookups: bool
    pool_calls: tuple[PooledCall, ...]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SparseValues:
    """The values of a model's `SparseReads` for one batch (and, alike, their gradients).

    Attributes:
      lookups: {feature: [B, D] or [B, S, D]} of `sparse_arch(batch)`; empty if not read.
      pooled: [B, T, D] of each of the reads' `pool_calls`, in their order.
    """

    lookups: Lookups
    pooled: tuple[jax.Array, ...]


def read_values(
    sparse_arch: EmbeddingCollection, reads: SparseReads, batch: Features
) -> SparseValues:
    """The `SparseValues` of `reads` for `batch`, by the collection's own lowering (outside the
    differentiated function: the lowering needs no backward pass)."""
    return SparseValues(
        lookups=sparse_arch(batch) if reads.lookups else {},
        pooled=tuple(sparse_arch.pool_call(call, batch) for call in reads.pool_calls),
    )


def _other_use(name: str) -> AttributeError:
    return AttributeError(
        f"The train step gives the model its embedding lookups through `model.sparse_arch(batch)` "
        f"and `model.sparse_arch.pool_call(call, batch)` only (the family contract); the model "
        f"asked for `sparse_arch.{name}`."
    )


def _check_layout(batch: Features, layout: FeatureLayout) -> None:
    if batch.layout != layout:
        raise ValueError(
            f"The batch's sparse features {list(batch.layout.names)} are not the model's "
            f"{list(layout.names)}."
        )


class RecordingSparseArch:
    """Stands in for `model.sparse_arch` while the model is traced on abstract inputs: it answers
    both reads with the collection's own, and records which were made (`reads()`). Any other use
    of the sparse arch fails here, naming the contract."""

    def __init__(self, sparse_arch: EmbeddingCollection):
        self._sparse_arch = sparse_arch
        self._lookups = False
        self._pool_calls: list[PooledCall] = []

    def __call__(self, batch: Features) -> Lookups:
        self._lookups = True
        return self._sparse_arch(batch)

    def pool_call(self, call: PooledCall, batch: Features) -> jax.Array:
        if call not in self._pool_calls:
            self._pool_calls.append(call)
        return self._sparse_arch.pool_call(call, batch)

    def reads(self) -> SparseReads:
        return SparseReads(self._lookups, tuple(self._pool_calls))

    def __getattr__(self, name: str):
        raise _other_use(name)


class GivenLookups:
    """Stands in for `model.sparse_arch` inside the differentiated function.

    Called as the model calls its sparse arch (`sparse_arch(batch)`, `sparse_arch.pool_call(call,
    batch)`), it returns the values computed outside the function, so that the gradient flows to
    them and stops there. A read that was not recorded, or any other use of the sparse arch, fails
    here, naming the contract.
    """

    def __init__(self, values: SparseValues, reads: SparseReads, layout: FeatureLayout):
        self._values = values
        self._reads = reads
        self._layout = layout

    def __call__(self, batch: Features) -> Lookups:
        _check_layout(batch, self._layout)
        if not self._reads.lookups:
            raise ValueError(
                "The model called `sparse_arch(batch)`, which it did not when its reads were "
                "recorded: its reads must not depend on the batch."
            )
        return dict(self._values.lookups)

    def pool_call(self, call: PooledCall, batch: Features) -> jax.Array:
        _check_layout(batch, self._layout)
        if call not in self._reads.pool_calls:
            raise ValueError(
                f"The model called `sparse_arch.pool_call` for features {list(call.features)} "
                f"in group {call.group}, which it did not when its reads were recorded: its "
                "reads must not depend on the batch."
            )
        return self._values.pooled[self._reads.pool_calls.index(call)]

    def __getattr__(self, name: str):
        raise _other_use(name)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LookupGradient:
    """The row gradients of one call of the sparse arch, unexpanded.

    The gradient of lookup (b, t, c) is `factors[b, t, c] * grads[b, t]` (pooled) or
    `factors[b, t, c] * grads[b, t, c]` (sequence), and goes to row `rows[b, t, c]` of the group's
    stacked buffer.

    Attributes:
      rows: [B, T, C] int32 rows of the stacked buffer (table offset added, clamped to [0, N) as
        the forward gather clamps them).
      factors: [B, T, C] float32 (0 at padding positions).
      grads: [B, T, D] (pooled) or [B, T, C, D] (sequence) gradient of the loss w.r.t. the output.
      group: the stacked buffer (static).
      tables: the table of each of the T slots (static).
      pooled: whether `grads` is per bag (static).
    """

    rows: jax.Array
    factors: jax.Array
    grads: jax.Array
    group: str = dataclasses.field(metadata={"static": True})
    tables: tuple[str, ...] = dataclasses.field(metadata={"static": True})
    pooled: bool = dataclasses.field(metadata={"static": True})

    @property
    def positions(self) -> int:
        return int(self.rows.shape[2])

    def lookup_grads(self, slot: int | jax.Array) -> tuple[jax.Array, jax.Array]:
        """Slot t's B*C rows [M] and their per-lookup gradients [M, D] (materialized); `slot`
        may be traced (a loop index)."""

        def take(array):
            return jax.lax.dynamic_index_in_dim(array, slot, axis=1, keepdims=False)

        factors = take(self.factors)[:, :, None]  # [B, C, 1]
        grads = factors * (take(self.grads)[:, None, :] if self.pooled else take(self.grads))
        return take(self.rows).reshape(-1), grads.reshape(-1, grads.shape[-1])


def group_rows(sparse_arch: EmbeddingCollection, group: str) -> int:
    """N, the rows of a group's stacked buffer."""
    return sum(
        rows
        for table, rows in sparse_arch.table_rows.items()
        if sparse_arch.table_group[table] == group
    )


def _factors(
    capacity: int,
    lengths: jax.Array | None,
    weights: jax.Array | None,
    mean: bool,
    batch_size: int,
    num_slots: int,
) -> jax.Array:
    """[B, T, C] d(output)/d(row) of each lookup, as the lowerings of embedding_bag.py pool."""
    factors = jnp.ones((batch_size, num_slots, capacity), jnp.float32)
    if weights is not None:
        factors = weights.astype(jnp.float32)
    if lengths is not None:
        valid = jnp.arange(capacity, dtype=jnp.int32)[None, None, :] < lengths[:, :, None]
        factors = jnp.where(valid, factors, 0.0)
    if mean:
        divisor = (
            jnp.float32(capacity)
            if lengths is None
            else jnp.maximum(lengths, 1).astype(jnp.float32)[:, :, None]
        )
        factors = factors / divisor
    return factors


def _stack_columns(array: jax.Array, batch: Features, names: tuple[str, ...]) -> jax.Array:
    """[B, T, C] columns of the named features from a [B, sum C] block."""
    columns = [batch.layout.columns[batch.layout.index(name)] for name in names]
    capacity = batch.layout.capacities[batch.layout.index(names[0])]
    return jnp.stack([array[:, column : column + capacity] for column in columns], axis=1)


def _pooled_gradient(
    sparse_arch: EmbeddingCollection,
    call: PooledCall,
    batch: Features,
    grads: jax.Array,
    table_at: dict[tuple[str, int], str],
) -> LookupGradient:
    """The row gradients of one pooled call, from d loss / d its [B, T, D] output."""
    num_rows = group_rows(sparse_arch, call.group)
    ids = _stack_columns(batch.ids, batch, call.features)  # [B, T, C]
    offsets = jnp.asarray(call.row_offsets, jnp.int32)[None, :, None]
    lengths = None
    if not call.fixed_length:
        indices = jnp.asarray([batch.layout.index(name) for name in call.features])
        lengths = batch.lengths[:, indices]
    weights = _stack_columns(batch.weights, batch, call.features) if call.weighted else None
    return LookupGradient(
        rows=jnp.clip(ids + offsets, 0, num_rows - 1),
        factors=_factors(
            call.capacity, lengths, weights, call.mean, ids.shape[0], len(call.features)
        ),
        grads=grads,
        group=call.group,
        tables=tuple(table_at[call.group, offset] for offset in call.row_offsets),
        pooled=True,
    )


def _sequence_gradient(
    sparse_arch: EmbeddingCollection, name: str, table: str, batch: Features, grads: jax.Array
) -> LookupGradient:
    """The row gradients of one sequence feature, from d loss / d its [B, S, D] rows."""
    group = sparse_arch.table_group[table]
    num_rows = group_rows(sparse_arch, group)
    ids = batch.ids_of(name)[:, None, :]  # [B, 1, S]
    lengths = batch.lengths_of(name)[:, None]
    return LookupGradient(
        rows=jnp.clip(ids + sparse_arch.table_offset[table], 0, num_rows - 1),
        factors=_factors(ids.shape[2], lengths, None, False, ids.shape[0], 1),
        grads=grads[:, None],  # [B, 1, S, D]
        group=group,
        tables=(table,),
        pooled=False,
    )


def lookup_gradients(
    sparse_arch: EmbeddingCollection,
    reads: SparseReads,
    batch: Features,
    cotangents: SparseValues,
) -> list[LookupGradient]:
    """The row gradients of every lookup the model's reads made for `batch`.

    Args:
      sparse_arch: the model's `EmbeddingCollection` (its call plan and table offsets).
      reads: the reads the model makes (recorded by `RecordingSparseArch`).
      batch: the batch the lookups were made for.
      cotangents: d loss / d the reads' values, a `SparseValues`.
    """
    table_at = {
        (sparse_arch.table_group[table], offset): table
        for table, offset in sparse_arch.table_offset.items()
    }
    gradients = []
    if reads.lookups:
        for call in sparse_arch.pooled_calls:
            grads = jnp.stack([cotangents.lookups[name] for name in call.features], axis=1)
            gradients.append(_pooled_gradient(sparse_arch, call, batch, grads, table_at))
        for name, table in sparse_arch.sequence_features:
            grads = cotangents.lookups[name]
            gradients.append(_sequence_gradient(sparse_arch, name, table, batch, grads))
    for call, grads in zip(reads.pool_calls, cotangents.pooled, strict=True):
        gradients.append(_pooled_gradient(sparse_arch, call, batch, grads, table_at))
    return gradients
