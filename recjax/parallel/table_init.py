"""Table values that any shard can make on its own, without the rest of its table.

A sharded table is never built whole: each process makes only the rows and columns of its own
shards. The values therefore have to be addressable by row: rows are drawn in blocks of
`BLOCK_ROWS`, block k of table t from NumPy's PCG64 seeded with (seed, t, k), uniform in
(-1/sqrt(R), 1/sqrt(R)) like the reference DLRM's initialization. A shard of rows [a, b) draws only
the blocks that overlap it (peak: the shard plus one block). `full_table` gives the same values for
a whole table, to load into an unsharded model for comparison.
"""

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.inputs.features import TableConfig

BLOCK_ROWS = 16_384


def _block(seed: int, table_index: int, table: TableConfig, block: int) -> np.ndarray:
    first = block * BLOCK_ROWS
    rows = min(BLOCK_ROWS, table.num_rows - first)
    scale = np.float32(1.0 / math.sqrt(table.num_rows))
    rng = np.random.default_rng([seed, table_index, block])
    values = rng.random((rows, table.dim), dtype=np.float32)
    return (2 * values - 1) * scale


def table_rows(
    seed: int,
    table_index: int,
    table: TableConfig,
    rows: tuple[int, int],
    columns: tuple[int, int],
) -> np.ndarray:
    """[rows[1] - rows[0], columns[1] - columns[0]] float32 values of table `table_index`."""
    start, stop = rows
    out = np.empty((stop - start, columns[1] - columns[0]), np.float32)
    if stop <= start:
        return out
    for block in range(start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS + 1):
        first = block * BLOCK_ROWS
        values = _block(seed, table_index, table, block)
        low, high = max(start, first), min(stop, first + values.shape[0])
        out[low - start : high - start] = values[low - first : high - first, slice(*columns)]
    return out


def full_table(seed: int, table_index: int, table: TableConfig) -> np.ndarray:
    """[R, D] every value of table `table_index`, as its shards hold them."""
    return table_rows(seed, table_index, table, (0, table.num_rows), (0, table.dim))


def load_full_tables(model: nnx.Module, seed: int) -> nnx.Module:
    """Overwrites an unsharded model's tables with `full_table` values (in place; returns it), so
    that it computes what the sharded model built with the same seed computes."""
    collection = model.sparse_arch
    stacked = {name: np.array(buffer) for name, buffer in collection.table_buffers().items()}
    for index, table in enumerate(model.config.tables):
        offset = collection.table_offset[table.name]
        group = collection.table_group[table.name]
        row_format = collection.row_formats[group]  # stored as the group stores rows
        stacked[group][offset : offset + table.num_rows] = row_format.encode_on_host(
            full_table(seed, index, table)
        )
    for name, values in stacked.items():
        # A device array, not the NumPy buffer: a NumPy parameter would be copied to the device
        # on every call of the compiled model (the whole table set, per call).
        collection.tables[name].set_value(jnp.asarray(values))
    return model
