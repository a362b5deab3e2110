"""Optimizers for embedding tables that update only the looked-up rows, in place.

An optax `GradientTransformation` maps a gradient pytree to an update pytree of the same shapes:
for a table that is a dense [N, D] array per step, which is what the sparse update avoids. An
`EmbeddingOptimizer` is the documented equivalent for tables: the same two functions, except that
`update` receives the row gradients of the step's lookups (`LookupGradient`s) and returns the
updated tables itself, writing only the rows that were looked up (the train step donates the
table buffers, so XLA writes them in place):

    optimizer = rowwise_adagrad(learning_rate=0.05)
    state = optimizer.init(tables)                       # {group: [N, D]} -> state
    tables, state = optimizer.update(lookup_grads, state, tables)

`learning_rate` is a number or an optax schedule of the step count (`state["count"]`).

- `sgd`: table[r] -= lr * g_r, by the native kernel when built (threads own disjoint row
  ranges; each applies its rows' updates in lookup order, in place), else one bag position at a
  time: each of the C positions scatter-adds a [B, T, D] block into the table. Either way repeated
  ids sum exactly as in the dense gradient, and nothing larger than [B, T, D] is formed.
- `rowwise_adagrad` (FBGEMM's and TorchRec's default for tables): one accumulator per row,
  a_r += mean_d(g_r[d]^2), table[r] -= lr * g_r / (sqrt(a_r) + eps), where g_r is the sum of the
  row's gradients in the step. By the native kernel when built (threads own disjoint row ranges
  and take one table at a time; a row looked up once steps straight from its lookup, a repeated
  row from the sum of its gradients), else in XLA one table at a time: each lookup finds its
  row's first lookup (a scatter-min into an int per row), a segment sum adds the gradients there,
  and the first lookups step their rows; the largest array formed is one table's [B x C, D]
  lookup gradients. Neither sorts the ids.

Shapes: `N` rows of a stacked group buffer, `D` embedding dim, `M` lookups of one table in a batch.
"""

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recjax import native
from recjax.train.sparse_embeddings import LookupGradient

Tables = Mapping[str, jax.Array]
EmbeddingState = dict[str, Any]
LearningRate = float | Callable[[jax.Array], jax.Array]


class EmbeddingOptimizer(NamedTuple):
    """The table counterpart of `optax.GradientTransformation` (see the module docstring).

    Attributes:
      init: ({group: [N, D]}) -> state.
      update: (lookup gradients, state, {group: [N, D]}) -> (updated tables, new state).
      name: for reports.
    """

    init: Callable[[Tables], EmbeddingState]
    update: Callable[
        [Sequence[LookupGradient], EmbeddingState, Tables],
        tuple[dict[str, jax.Array], EmbeddingState],
    ]
    name: str


def _rate(learning_rate: LearningRate, count: jax.Array) -> jax.Array:
    return jnp.asarray(learning_rate(count) if callable(learning_rate) else learning_rate)


def _sgd_apply(table: jax.Array, gradient: LookupGradient, rate: jax.Array) -> jax.Array:
    """table[rows] -= rate * gradient, one bag position per loop iteration."""

    def add_position(position, table):
        factors = jax.lax.dynamic_index_in_dim(gradient.factors, position, 2, keepdims=False)
        rows = jax.lax.dynamic_index_in_dim(gradient.rows, position, 2, keepdims=False)  # [B, T]
        if gradient.pooled:
            grads = gradient.grads  # [B, T, D]
        else:
            grads = jax.lax.dynamic_index_in_dim(gradient.grads, position, 2, keepdims=False)
        update = (-rate * factors[:, :, None] * grads).astype(table.dtype)
        return table.at[rows].add(update, mode="promise_in_bounds")

    return jax.lax.fori_loop(0, gradient.positions, add_position, table)


def sgd(learning_rate: LearningRate, use_native: bool | None = None) -> EmbeddingOptimizer:
    """Plain SGD on the looked-up rows (see the module docstring).

    `use_native` (default: when the native library has it) applies each call's update with one
    C++ kernel (`recjax.native.sparse_row_update`: threads own disjoint row ranges, each applies
    its rows' updates in lookup order) instead of XLA scatters one bag position at a time.
    """
    if use_native is None:
        use_native = native.has_sparse_row_update()

    def init(tables: Tables) -> EmbeddingState:
        del tables
        return {"count": jnp.zeros((), jnp.int32)}

    def update(gradients, state, tables):
        rate = _rate(learning_rate, state["count"])
        tables = dict(tables)
        for gradient in gradients:
            table = tables[gradient.group]
            if use_native:
                tables[gradient.group] = native.sparse_row_update(
                    table, gradient.rows, gradient.factors, gradient.grads, -rate
                )
            else:
                tables[gradient.group] = _sgd_apply(table, gradient, rate)
        return tables, {"count": state["count"] + 1}

    return EmbeddingOptimizer(init, update, "sgd")


def sum_repeated_rows(
    rows: jax.Array, grads: jax.Array, num_rows: int
) -> tuple[jax.Array, jax.Array]:
    """(rows [M], summed gradients [M, D]): each distinct row once, its gradients summed.

    Entry i holds row `rows[i]` and the sum of that row's gradients if lookup i is the row's
    first, else row `num_rows` (out of range: writes to it are dropped) and zeros. No sort: the
    first lookup of every row is found by a scatter-min of positions into an int per table row.
    """
    size = rows.shape[0]
    positions = jnp.arange(size, dtype=jnp.int32)
    first = jnp.full((num_rows,), size, jnp.int32).at[rows].min(positions, mode="drop")
    first_of_mine = first.at[rows].get(mode="fill", fill_value=size)  # [M]
    summed = jax.ops.segment_sum(grads, first_of_mine, num_segments=size)
    return jnp.where(first_of_mine == positions, rows, num_rows), summed


def _rowwise_adagrad_rows(table, accumulator, rows, grads, rate, epsilon):
    """One table's row-wise Adagrad step from its lookups: rows [M], per-lookup grads [M, D]."""
    targets, summed = sum_repeated_rows(rows, grads, table.shape[0])
    row_accumulator = accumulator.at[targets].get(mode="fill", fill_value=0.0) + jnp.mean(
        summed * summed, axis=1
    )
    root = jnp.sqrt(row_accumulator) + epsilon
    # A zero root (epsilon 0, all gradients 0 so far) means a zero gradient: no step.
    step = -rate * summed / jnp.where(root > 0, root, 1.0)[:, None]
    accumulator = accumulator.at[targets].set(row_accumulator, mode="drop")
    table = table.at[targets].add(step.astype(table.dtype), mode="drop")
    return table, accumulator


def _readers(gradients: Sequence[LookupGradient]) -> dict[tuple[str, str], int]:
    """{(group, table): how many slots of all the gradients read it}."""
    return collections.Counter(
        (gradient.group, table) for gradient in gradients for table in gradient.tables
    )


def rowwise_adagrad(
    learning_rate: LearningRate,
    epsilon: float = 1e-8,
    initial_accumulator_value: float = 0.0,
    use_native: bool | None = None,
) -> EmbeddingOptimizer:
    """Row-wise Adagrad on the looked-up rows: one float32 accumulator per row.

    `use_native` (default: when the native library has it) steps each group's buffer with one
    C++ kernel (`recjax.native.sparse_rowwise_adagrad`) when a single call reads the group. Else,
    in XLA, tables are updated one at a time, in a loop over the slots of each call whose table no
    other slot reads (every DLRM table), so that only one table's lookup gradients are alive at
    once; a table read by several features (slots) sums all their lookups before its step.
    """
    if use_native is None:
        use_native = native.has_sparse_rowwise_adagrad()

    def init(tables: Tables) -> EmbeddingState:
        return {
            "count": jnp.zeros((), jnp.int32),
            "accumulators": {
                group: jnp.full((table.shape[0],), initial_accumulator_value, jnp.float32)
                for group, table in tables.items()
            },
        }

    def update(gradients, state, tables):
        rate = _rate(learning_rate, state["count"])
        tables = dict(tables)
        accumulators = dict(state["accumulators"])
        calls_of_group = collections.Counter(gradient.group for gradient in gradients)
        if use_native:
            for gradient in gradients:
                if calls_of_group[gradient.group] == 1:
                    group = gradient.group
                    tables[group], accumulators[group] = native.sparse_rowwise_adagrad(
                        tables[group],
                        accumulators[group],
                        gradient.rows,
                        gradient.factors,
                        gradient.grads,
                        rate,
                        epsilon,
                        [gradient.tables.index(table) for table in gradient.tables],
                    )
            gradients = [g for g in gradients if calls_of_group[g.group] > 1]
        readers = _readers(gradients)
        shared: dict[tuple[str, str], list[tuple[jax.Array, jax.Array]]] = {}
        for gradient in gradients:
            group = gradient.group
            own = []
            for slot, table in enumerate(gradient.tables):
                if readers[group, table] == 1:
                    own.append(slot)
                else:
                    shared.setdefault((group, table), []).append(gradient.lookup_grads(slot))
            if not own:
                continue
            slots = jnp.asarray(own, jnp.int32)

            def one_table(index, carry, gradient=gradient, slots=slots):
                rows, grads = gradient.lookup_grads(slots[index])
                return _rowwise_adagrad_rows(*carry, rows, grads, rate, epsilon)

            tables[group], accumulators[group] = jax.lax.fori_loop(
                0, len(own), one_table, (tables[group], accumulators[group])
            )
        for (group, _), parts in shared.items():
            rows = jnp.concatenate([rows for rows, _ in parts])
            grads = jnp.concatenate([grads for _, grads in parts])
            tables[group], accumulators[group] = _rowwise_adagrad_rows(
                tables[group], accumulators[group], rows, grads, rate, epsilon
            )
        return tables, {"count": state["count"] + 1, "accumulators": accumulators}

    return EmbeddingOptimizer(init, update, "rowwise_adagrad")


EMBEDDING_OPTIMIZERS: dict[str, Callable[..., EmbeddingOptimizer]] = {
    "sgd": sgd,
    "rowwise_adagrad": rowwise_adagrad,
}


def embedding_optimizer(name: str, learning_rate: LearningRate) -> EmbeddingOptimizer:
    """The table optimizer called `name`; raises ValueError naming the accepted ones."""
    if name not in EMBEDDING_OPTIMIZERS:
        raise ValueError(
            f"Unknown embedding optimizer {name!r}; expected one of {sorted(EMBEDDING_OPTIMIZERS)}."
        )
    return EMBEDDING_OPTIMIZERS[name](learning_rate)
