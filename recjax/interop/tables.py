"""A model's embedding tables, one by one, out of and into its stacked group buffers.

An `EmbeddingCollection` stacks the tables of one (dim, dtype) group in one [N, W] buffer, table t
at rows [table_offset[t], table_offset[t] + table_rows[t]). PyTorch keeps one [rows, D] tensor per
table (`nn.EmbeddingBag.weight`). These helpers move between the two without a second host copy
of float32 tables; tables stored otherwise (float16, bfloat16, int8 or int4 row-wise:
`recjax.layers.quantization`) are read as float32 copies and written back in their format.
NumPy and JAX only: torch tensors are accepted as values, torch is not imported.
"""

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.quantization import RowFormat


def as_numpy(value) -> np.ndarray:
    """A NumPy view of a NumPy array, torch tensor (detached, on the CPU) or JAX array."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _decoded_rows(stacked: jax.Array, first_row: jax.Array, num_rows: int, row_format: RowFormat):
    rows = jax.lax.dynamic_slice(stacked, (first_row, 0), (num_rows, stacked.shape[1]))
    return row_format.decode(rows)


def table_array(collection: EmbeddingCollection, name: str) -> np.ndarray:
    """[rows, D] float32 values of table `name`: a read-only NumPy view of its group buffer for a
    packed float32 table, its rows decoded to float32 (a copy) otherwise."""
    group = collection.table_group[name]
    first_row, rows = collection.table_offset[name], collection.table_rows[name]
    buffer = collection.table_buffers()[group]
    row_format = collection.row_formats[group]
    if row_format == RowFormat("float32", row_format.dim):
        return np.asarray(buffer)[first_row : first_row + rows]
    return np.asarray(_decoded_rows(buffer, jnp.int32(first_row), rows, row_format))


def table_views(collection: EmbeddingCollection) -> dict[str, np.ndarray]:
    """{table name: [rows, D] float32}: read-only NumPy views of the collection's group buffers
    (no copy: gigabytes for the full presets), or decoded copies of tables stored otherwise
    (`table_array`)."""
    return {name: table_array(collection, name) for name in collection.table_offset}


@functools.partial(jax.jit, donate_argnums=0, static_argnums=3)
def _write_rows(
    stacked: jax.Array, block: jax.Array, first_row: jax.Array, row_format: RowFormat
) -> jax.Array:
    return jax.lax.dynamic_update_slice(stacked, row_format.encode(block), (first_row, 0))


def filled_group(
    collection: EmbeddingCollection,
    group: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    tables: Mapping[str, object],
) -> jax.Array:
    """The [N, W] buffer of one group, filled table by table into one donated device buffer.

    `collection` may be abstract (from `abstract_model`): only its layout is read. `tables` maps
    each table name of the group to its [rows, D] values (NumPy, torch or JAX, any float dtype),
    stored in the group's row format (float32 as they are; other dtypes rounded or quantized).
    The peak is the buffer plus one table in flight, beside the caller's arrays.
    """
    row_format = collection.row_formats[group]
    stacked = jax.jit(lambda: jnp.zeros(shape, dtype))()
    for name, first_row in collection.table_offset.items():
        if collection.table_group[name] != group:
            continue
        block = np.asarray(as_numpy(tables[name]), np.float32)
        stacked = _write_rows(stacked, block, jnp.int32(first_row), row_format)
    return stacked
