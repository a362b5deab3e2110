"""State dicts in the layout of the PyTorch reference DLRM (facebookresearch/dlrm, `DLRM_Net`).

The reference model keeps its parameters under these keys (K sparse features, each with its own
table; bottom MLP with layers i = 0, 1, ..., top MLP likewise; the odd indices of `bot_l` and
`top_l` are the ReLU and sigmoid modules of an `nn.Sequential`, which hold no parameters):

    emb_l.<k>.weight      [rows_k, D]      the table of sparse feature k (an nn.EmbeddingBag)
    bot_l.<2i>.weight     [out, in]        bottom-MLP layer i (an nn.Linear: y = x W^T + b)
    bot_l.<2i>.bias       [out]
    top_l.<2i>.weight     [out, in]        top-MLP layer i
    top_l.<2i>.bias       [out]

The reference numbers its tables by sparse feature, so `emb_l.<k>` is the table of the config's
k-th feature; a config maps onto it when every table is read by exactly one feature
(`reference_tables`). recjax keeps a flax kernel [in, out] (y = x K + b), so K = W^T, and stacks the
tables of one (dim, dtype) group in one [N, D] buffer (`model.sparse_arch.tables[group]`), table t
at rows [table_offset[t], table_offset[t] + table_rows[t]). The architectures agree: ReLU after
every bottom layer, ReLU between top layers, sigmoid after the last; the "dot" interaction takes the
bottom-MLP output first, then the features in order, and appends the products z_i . z_j for j < i
in row order after the bottom-MLP output.

The reference's tables and weights are float32: a model with tables of another dtype (float16,
bfloat16, int8 or int4 row-wise) exports each table read as float32 (decoded: a copy), and a state
dict imported into such a config is stored in its dtypes (rounded or quantized, table by table);
bfloat16 MLP kernels export as float32 and import rounded.

A state dict holds weights only: how the bags pool (sum or mean, weighted or not, fixed or ragged)
is the config's, and `recjax.interop.torch_dlrm` says which configs the PyTorch twin runs. The state
dict is pure NumPy: torch is not needed to export or import (torch tensors are accepted as values).
"""

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.inputs.features import TableConfig
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.quantization import RowFormat
from recjax.models.dlrm import DLRM, DLRMConfig
from recjax.models.family import abstract_model

# recjax's MLP modules in the model, and the reference's nn.Sequential attribute for each.
MLP_PREFIXES = {"dense_arch": "bot_l", "over_arch": "top_l"}


class StateDictMismatchError(ValueError):
    """A state dict does not fit the preset: a missing or unexpected key, or a wrong shape."""


def reference_tables(config: DLRMConfig) -> tuple[TableConfig, ...]:
    """The table of each sparse feature, in feature order: `emb_l.<k>` is the k-th one.

    Raises:
      ValueError: a table is read by several features, or by none (the reference DLRM gives each
        feature a table of its own).
    """
    readers: dict[str, list[str]] = {table.name: [] for table in config.tables}
    for feature in config.features:
        readers[feature.table].append(feature.name)
    shared = {table: names for table, names in readers.items() if len(names) > 1}
    unused = [table for table, names in readers.items() if not names]
    if shared or unused:
        raise ValueError(
            f"{config.name}: the reference DLRM layout needs one table per sparse feature; "
            f"tables read by several features: {shared}; tables read by none: {unused}."
        )
    return tuple(config.table(feature.table) for feature in config.features)


def expected_shapes(config: DLRMConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the reference DLRM's state dict for `config`, with its shape."""
    shapes = {
        f"emb_l.{index}.weight": (table.num_rows, table.dim)
        for index, table in enumerate(reference_tables(config))
    }
    for prefix, in_features, layer_sizes in (
        ("bot_l", config.dense_features, config.bottom_mlp),
        ("top_l", config.top_mlp_in_features, config.top_mlp),
    ):
        widths = (in_features, *layer_sizes)
        for layer, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            shapes[f"{prefix}.{2 * layer}.weight"] = (width_out, width_in)
            shapes[f"{prefix}.{2 * layer}.bias"] = (width_out,)
    return shapes


@functools.partial(jax.jit, static_argnums=(2, 3))
def _decoded_rows(stacked: jax.Array, first_row: jax.Array, num_rows: int, row_format: RowFormat):
    rows = jax.lax.dynamic_slice(stacked, (first_row, 0), (num_rows, stacked.shape[1]))
    return row_format.decode(rows)


def reference_table(model: DLRM, index: int) -> np.ndarray:
    """The float32 table `emb_l.<index>` of the model: a read-only NumPy view of its stacked
    buffer for a float32 table, its rows decoded to float32 (a copy) for other dtypes."""
    table = reference_tables(model.config)[index]
    sparse_arch = model.sparse_arch
    group = sparse_arch.table_group[table.name]
    first_row = sparse_arch.table_offset[table.name]
    buffer = sparse_arch.table_buffers()[group]
    if table.dtype == "float32":
        return np.asarray(buffer)[first_row : first_row + table.num_rows]
    decoded = _decoded_rows(
        buffer, jnp.int32(first_row), table.num_rows, sparse_arch.row_formats[group]
    )
    return np.asarray(decoded)


def export_reference_state_dict(model: DLRM) -> dict[str, np.ndarray]:
    """The model's parameters under the reference DLRM's keys and layouts, in float32.

    Float32 tables are read-only NumPy views of the model's stacked group buffers (no copy: 4.1 GB
    for rmc1 and rmc2); tables of other dtypes are decoded copies (`reference_table`); the MLP
    weights are transposed float32 copies (small).
    """
    state_dict = {
        f"emb_l.{index}.weight": reference_table(model, index)
        for index in range(len(reference_tables(model.config)))
    }
    return {**state_dict, **export_mlp_state_dict(model)}


def export_mlp_state_dict(model: DLRM) -> dict[str, np.ndarray]:
    """The MLP weights alone (`bot_l.*`, `top_l.*`), as `export_reference_state_dict` gives them."""
    state_dict = {}
    for attribute, prefix in MLP_PREFIXES.items():
        for layer_index, layer in enumerate(getattr(model, attribute).layers):
            kernel = np.asarray(layer.kernel[...], np.float32)  # [in, out]
            state_dict[f"{prefix}.{2 * layer_index}.weight"] = np.ascontiguousarray(kernel.T)
            state_dict[f"{prefix}.{2 * layer_index}.bias"] = np.array(layer.bias[...], np.float32)
    return state_dict


def _as_numpy(value) -> np.ndarray:
    """A NumPy view of a NumPy array, torch tensor (detached, on the CPU) or JAX array."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def check_state_dict(config: DLRMConfig, state_dict: Mapping[str, object]) -> None:
    """Raises StateDictMismatchError naming the first missing, unexpected or misshapen key."""
    expected = expected_shapes(config)
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise StateDictMismatchError(
            f"{config.name}: the state dict lacks {len(missing)} key(s) the preset needs; the "
            f"first is {missing[0]!r} (expected shape {list(expected[missing[0]])})."
        )
    unexpected = [key for key in state_dict if key not in expected]
    if unexpected:
        shape = list(np.shape(state_dict[unexpected[0]]))
        raise StateDictMismatchError(
            f"{config.name}: the state dict holds {len(unexpected)} key(s) the preset does not "
            f"have; the first is {unexpected[0]!r} (shape {shape}). The preset's keys are "
            f"{sorted(expected)}."
        )
    for key, shape in expected.items():
        got = tuple(np.shape(state_dict[key]))
        if got != shape:
            raise StateDictMismatchError(
                f"{config.name}: {key!r} has shape {list(got)}, but the preset expects "
                f"{list(shape)}."
            )
        dtype = _as_numpy(state_dict[key]).dtype
        if not np.issubdtype(dtype, np.floating):
            raise StateDictMismatchError(
                f"{config.name}: {key!r} has dtype {dtype}; expected a floating-point array."
            )


@functools.partial(jax.jit, donate_argnums=0, static_argnums=3)
def _write_rows(
    stacked: jax.Array, block: jax.Array, first_row: jax.Array, row_format: RowFormat
) -> jax.Array:
    return jax.lax.dynamic_update_slice(stacked, row_format.encode(block), (first_row, 0))


def _filled_group(
    config: DLRMConfig,
    state_dict: Mapping[str, object],
    sparse_arch: EmbeddingCollection,
    group: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
) -> jax.Array:
    """The [N, W] buffer of one table group, filled table by table into one donated device buffer.

    Table t goes to rows [table_offset[t], table_offset[t] + table_rows[t]) of its group, as the
    model lays it out, stored in the group's row format (float32 values rounded or quantized).
    The peak is the buffer plus one table in flight, beside the caller's state dict (no second
    host copy of the tables is made, unless a table needs a conversion to float32).
    """
    row_format = sparse_arch.row_formats[group]
    stacked = jax.jit(lambda: jnp.zeros(shape, dtype))()
    for index, table in enumerate(reference_tables(config)):
        if sparse_arch.table_group[table.name] != group:
            continue
        block = np.asarray(_as_numpy(state_dict[f"emb_l.{index}.weight"]), np.float32)
        stacked = _write_rows(
            stacked, block, jnp.int32(sparse_arch.table_offset[table.name]), row_format
        )
    return stacked


def import_reference_state_dict(config: DLRMConfig, state_dict: Mapping[str, object]) -> DLRM:
    """A recjax model of `config` holding the parameters of a reference-DLRM state dict.

    Values may be NumPy arrays, torch tensors or JAX arrays of any floating dtype (converted to the
    table's dtype, float32, and float32 for the MLPs). The state dict is checked against the preset
    before anything is allocated.

    Raises:
      StateDictMismatchError: a key is missing or unexpected, or a shape does not match (the
        message names the key and both shapes).
      ValueError: the config does not give each sparse feature a table of its own.
    """
    check_state_dict(config, state_dict)
    abstract = abstract_model(config)
    graphdef, abstract_state = nnx.split(abstract)
    filled = []
    for path, variable in nnx.to_flat_state(abstract_state):
        if path[:2] == ("sparse_arch", "tables") and len(path) == 3:
            value = _filled_group(
                config, state_dict, abstract.sparse_arch, path[2], variable.shape, variable.dtype
            )
        elif path[0] in MLP_PREFIXES and path[1] == "layers" and path[3] in ("kernel", "bias"):
            attribute, _, layer_index, name = path
            suffix = "weight" if name == "kernel" else "bias"
            key = f"{MLP_PREFIXES[attribute]}.{2 * layer_index}.{suffix}"
            array = np.asarray(_as_numpy(state_dict[key]), np.float32)
            value = jnp.asarray(array.T if name == "kernel" else array)  # kernel = W^T
            value = value.astype(variable.dtype)  # bfloat16 kernels are rounded
        else:
            raise ValueError(f"No reference-DLRM key maps to the model parameter {path}.")
        if value.shape != variable.shape or value.dtype != variable.dtype:
            # The preset and the model disagree: a recjax bug.
            raise AssertionError(
                f"{path}: built {value.shape} {value.dtype}, the model needs {variable.shape} "
                f"{variable.dtype}."
            )
        filled.append((path, variable.replace(value)))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))
