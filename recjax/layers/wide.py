"""The wide part of Wide & Deep: a linear model over the sparse features, one weight per id.

Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016, Section 3.1: the wide
component is a generalized linear model y = w^T x + b over sparse (one-hot or multi-hot) features x.
With one weight per id, w^T x restricted to a one-hot feature is the weight of its id, and to a bag
the sum of its ids' weights: an embedding bag over a table of dim 1.

The weight tables are ordinary tables of the model's `EmbeddingCollection` (dim 1, so they form a
stacked group of their own, "d1_float32", and share the collection's initialization, lowerings and
huge pages). Each sparse feature reads its ids a second time, in its wide table: the wide lookups
are the collection's own planned calls (`EmbeddingCollection.pooled_calls`, the same id columns,
capacity and pooling) pointed at the wide tables' rows. The bias b is left to the caller (Wide &
Deep has one bias for the wide and deep parts together, eq. 3).

Shapes: `B` batch, `T` features pooled in one call, `W` the wide tables' dim (1).
"""

import dataclasses
from collections.abc import Mapping

import jax
from flax import nnx

from recjax.inputs.features import Features
from recjax.layers.embedding_collection import EmbeddingCollection, PooledCall


def wide_calls(
    embeddings: EmbeddingCollection, wide_tables: Mapping[str, str]
) -> tuple[PooledCall, ...]:
    """The collection's pooled calls, each pointed at its features' wide tables.

    Args:
      embeddings: the collection that holds both the features' tables and the wide tables.
      wide_tables: {feature name: the name of its wide table}; features not named here have no
        wide weight. A call whose features' wide tables sit in different groups is split by group.
    """
    calls = []
    for call in embeddings.pooled_calls:
        members = [
            (name, column, embeddings.table_group[wide_tables[name]], wide_tables[name])
            for name, column in zip(call.features, call.columns, strict=True)
            if name in wide_tables
        ]
        for group in sorted({group for _, _, group, _ in members}):
            in_group = [member for member in members if member[2] == group]
            calls.append(
                dataclasses.replace(
                    call,
                    group=group,
                    features=tuple(name for name, _, _, _ in in_group),
                    columns=tuple(column for _, column, _, _ in in_group),
                    row_offsets=tuple(
                        embeddings.table_offset[table] for _, _, _, table in in_group
                    ),
                )
            )
    return tuple(calls)


class WideArch(nnx.Module):
    """w^T x: the sum over the sparse features of their ids' weights (no bias, no parameters of its
    own; the weights live in the collection passed in).

    Input  the model's `EmbeddingCollection` and a `Features` batch.
    Output [B, W] (W = 1 for Wide & Deep).

    Example:
        >>> wide = WideArch(model.sparse_arch, {"country": "country_wide"})
        >>> wide(model.sparse_arch, batch).shape
        (8, 1)
    """

    def __init__(self, embeddings: EmbeddingCollection, wide_tables: Mapping[str, str]):
        if not wide_tables:
            raise ValueError("WideArch needs at least one feature with a wide table; got none.")
        self.calls = wide_calls(embeddings, wide_tables)

    def __call__(self, embeddings: EmbeddingCollection, batch: Features) -> jax.Array:
        total = None
        for call in self.calls:
            pooled = embeddings.pool_call(call, batch).sum(axis=1)  # [B, T, W] -> [B, W]
            total = pooled if total is None else total + pooled
        return total
