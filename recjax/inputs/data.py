"""Model inputs: the batch type, deterministic synthetic batches, and input validation.

Shapes: `B` batch, `F` dense features, `T` tables, `L` lookups per table.
"""

from typing import NamedTuple

import jax
import numpy as np

from recjax.models.dlrm import DLRMConfig


class Batch(NamedTuple):
    """One batch of model inputs (a pytree).

    Attributes:
      dense: [B, F] float32 dense features.
      sparse_ids: [B, T, L] int32; sparse_ids[b, t] are the L rows of table t summed for sample b.
    """

    dense: np.ndarray | jax.Array
    sparse_ids: np.ndarray | jax.Array

    @property
    def batch_size(self) -> int:
        return int(self.dense.shape[0])


def synthetic_batch(config: DLRMConfig, batch_size: int, seed: int) -> Batch:
    """A reproducible batch on the host: dense ~ uniform[0, 1), ids uniform over each table's rows.

    Generated with NumPy's PCG64 in two vectorized calls, so batch 1024 of rmc2 (3.9 M ids) takes
    tens of milliseconds. The same (config, batch_size, seed) always gives the same batch.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; got {batch_size}.")
    rng = np.random.default_rng(seed)
    dense = rng.random((batch_size, config.dense_features), dtype=np.float32)
    rows = np.asarray([table.num_rows for table in config.tables], np.int64)
    sparse_ids = rng.integers(
        0, rows[None, :, None], size=(batch_size, config.num_tables, config.pooling_factor)
    ).astype(np.int32)
    return Batch(dense, sparse_ids)


def to_device(batch: Batch) -> Batch:
    """The batch as committed device arrays, transferred and ready (for timing)."""
    return jax.block_until_ready(jax.device_put(batch))


def check_batch_shapes(config: DLRMConfig, batch: Batch) -> None:
    """Raises ValueError unless `batch` has the shapes and dtypes that `config` takes."""
    dense_shape = tuple(batch.dense.shape)
    ids_shape = tuple(batch.sparse_ids.shape)
    if len(dense_shape) != 2 or dense_shape[1] != config.dense_features:
        raise ValueError(
            f"{config.name}: dense features must have shape [B, {config.dense_features}]; got "
            f"{list(dense_shape)}."
        )
    expected_ids = (dense_shape[0], config.num_tables, config.pooling_factor)
    if ids_shape != expected_ids:
        raise ValueError(
            f"{config.name}: sparse ids must have shape [B, T, L] = {list(expected_ids)}; got "
            f"{list(ids_shape)}."
        )
    if np.dtype(batch.dense.dtype) != np.float32:
        raise ValueError(f"Dense features must be float32; got {batch.dense.dtype}.")
    if np.dtype(batch.sparse_ids.dtype) != np.int32:
        raise ValueError(f"Sparse ids must be int32; got {batch.sparse_ids.dtype}.")


def describe_out_of_range_ids(config: DLRMConfig, sparse_ids: np.ndarray) -> str:
    """A message naming the first out-of-range id, its position and its table's valid range."""
    ids = np.asarray(sparse_ids)
    rows = np.asarray([table.num_rows for table in config.tables])[None, :, None]
    bad = (ids < 0) | (ids >= rows)
    count = int(bad.sum())
    if count == 0:
        return "all ids are in range"
    sample, table, lookup = (int(i) for i in np.argwhere(bad)[0])
    table_config = config.tables[table]
    return (
        f"{count} sparse id(s) out of range; the first is {int(ids[sample, table, lookup])} at "
        f"[sample {sample}, table {table} ({table_config.name}), lookup {lookup}], but table "
        f"{table_config.name} accepts ids in [0, {table_config.num_rows})."
    )
