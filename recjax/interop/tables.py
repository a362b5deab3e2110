"""A model's embedding tables, one by one, out of and into its stacked group buffers.

An `EmbeddingCollection` stacks the tables of one (dim, dtype) group in one [N, D] buffer, table t
at rows [table_offset[t], table_offset[t] + table_rows[t]). PyTorch keeps one [rows, D] tensor per
table (`nn.EmbeddingBag.weight`). These helpers move between the two without a second host copy
of the tables. NumPy and JAX only: torch tensors are accepted as values, torch is not imported.
"""

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from recjax.layers.embedding_collection import EmbeddingCollection


def as_numpy(value) -> np.ndarray:
    """A NumPy view of a NumPy array, torch tensor (detached, on the CPU) or JAX array."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def table_views(collection: EmbeddingCollection) -> dict[str, np.ndarray]:
    """{table name: [rows, D]}: read-only NumPy views of the collection's group buffers (no copy:
    gigabytes for the full presets)."""
    stacked = {group: np.asarray(buffer) for group, buffer in collection.table_buffers().items()}
    views = {}
    for name, first_row in collection.table_offset.items():
        group = stacked[collection.table_group[name]]
        views[name] = group[first_row : first_row + collection.table_rows[name]]
    return views


@functools.partial(jax.jit, donate_argnums=0)
def _write_rows(stacked: jax.Array, block: jax.Array, first_row: jax.Array) -> jax.Array:
    return jax.lax.dynamic_update_slice(stacked, block, (first_row, 0))


def filled_group(
    collection: EmbeddingCollection,
    group: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    tables: Mapping[str, object],
) -> jax.Array:
    """The [N, D] buffer of one group, filled table by table into one donated device buffer.

    `collection` may be abstract (from `abstract_model`): only its layout is read. `tables` maps
    each table name of the group to its [rows, D] values (NumPy, torch or JAX, any float dtype,
    converted to `dtype`). The peak is the buffer plus one table in flight, beside the caller's
    arrays.
    """
    stacked = jax.jit(lambda: jnp.zeros(shape, dtype))()
    for name, first_row in collection.table_offset.items():
        if collection.table_group[name] != group:
            continue
        block = np.asarray(as_numpy(tables[name]), dtype)
        stacked = _write_rows(stacked, block, jnp.int32(first_row))
    return stacked
