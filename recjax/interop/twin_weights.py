"""What the eager PyTorch twins of the feed-forward families share: a recjax model's weights as
NumPy arrays in PyTorch's layouts, and the input check every predictor makes. NumPy only: torch is
not imported here.

recjax keeps a flax kernel [in, out] (y = x K + b); `nn.Linear` keeps weight [out, in]
(y = x W^T + b), so W = K^T. The tables of one (dim, dtype) group share one stacked [N, D] buffer
(`model.sparse_arch.tables[group]`), table t at rows [table_offset[t], table_offset[t] +
table_rows[t]); a table's weight is that slice, a read-only view (no copy is made here; the twin's
`load_state_dict` copies it once into its own parameter).

Shapes: `B` batch, `N` rows of a stacked buffer, `D` embedding dim.
"""

import numpy as np
from flax import nnx

from recjax.inputs.checks import (
    InvalidInputError,
    check_batch_shapes,
    describe_invalid_inputs,
    inputs_valid,
)
from recjax.inputs.features import Features
from recjax.interop.tables import table_array
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.mlp import MLP
from recjax.models.family import ModelConfig


def table_weight(embeddings: EmbeddingCollection, table: str) -> np.ndarray:
    """[rows, D] float32 rows of `table`: a view of its group's stacked buffer, or a decoded copy
    for a table not stored as packed float32 (`recjax.interop.tables.table_array`)."""
    return table_array(embeddings, table)


def linear_state(prefix: str, layer: nnx.Linear) -> dict[str, np.ndarray]:
    """{prefix.weight: [out, in], prefix.bias: [out]} of one layer (no bias key without a bias)."""
    kernel = np.asarray(layer.kernel[...], np.float32)  # bfloat16 kernels widen exactly
    state = {f"{prefix}.weight": np.ascontiguousarray(kernel.T)}
    if layer.bias is not None:
        state[f"{prefix}.bias"] = np.asarray(layer.bias[...])
    return state


def sequential_state(prefix: str, mlp: MLP) -> dict[str, np.ndarray]:
    """The state of `nn.Sequential(Linear, ReLU, Linear, ReLU, ...)` holding `mlp`'s layers: layer
    i at index 2i (the activations between hold no parameters)."""
    state = {}
    for index, layer in enumerate(mlp.layers):
        state.update(linear_state(f"{prefix}.{2 * index}", layer))
    return state


def checked(config: ModelConfig, batch: Features) -> Features:
    """`batch`, after the checks of `recjax.runtime.inference.CompiledPredictor`.

    Raises:
      ValueError: the batch's layout, shapes or dtypes are not the model's.
      InvalidInputError: an id is outside its table, a length outside what its feature accepts,
        or a dense value not finite (the message names the first, as the compiled predictor's).
    """
    check_batch_shapes(config, batch)
    if not bool(inputs_valid(config, batch)):
        raise InvalidInputError(f"{config.name}: {describe_invalid_inputs(config, batch)}")
    return batch


def feature_ids(batch: Features) -> list[np.ndarray]:
    """Each sparse feature's [B, C] ids, in batch order, as contiguous int32 copies."""
    ids = np.asarray(batch.ids)
    return [
        np.array(ids[:, column : column + capacity])
        for column, capacity in zip(batch.layout.columns, batch.layout.capacities, strict=True)
    ]
