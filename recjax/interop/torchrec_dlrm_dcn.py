"""State dicts of TorchRec's `DLRM_DCN` (`torchrec.models.dlrm`), the model of MLPerf's DLRM-v2.

TorchRec's module order is sparse arch, dense arch, interaction, over arch; with T tables, bottom
MLP layers i, cross layers l and top MLP layers j, `DLRM_DCN.state_dict()` holds:

    sparse_arch.embedding_bag_collection.embedding_bags.<table>.weight   [rows, D]  EmbeddingBag
    dense_arch.model._mlp.<i>._linear.weight     [out, in]  torchrec MLP: Linear then ReLU
    dense_arch.model._mlp.<i>._linear.bias       [out]
    inter_arch.crossnet.W_kernels.<l>            [N, r]     LowRankCrossNet (U_l of the paper)
    inter_arch.crossnet.V_kernels.<l>            [r, N]
    inter_arch.crossnet.bias.<l>                 [N]
    over_arch.model.0._mlp.<j>._linear.weight    [out, in]  every top layer but the last, ReLU
    over_arch.model.0._mlp.<j>._linear.bias      [out]
    over_arch.model.1.weight                     [1, in]    the last top layer, nn.Linear
    over_arch.model.1.bias                       [1]

with N = (T + 1) D. recjax's DCN-V2 (`recjax.models.dcnv2`, the DLRM module with the "cross"
interaction) computes the same function: TorchRec's `LowRankCrossNet` layer is
x_{l+1} = x_0 * (W_l (V_l x_l) + b_l) + x_l, i.e. `linear(linear(x, V), W)`, with x_0 the dense
arch's output followed by the pooled features ([B, 1 + T, D] reshaped to [B, N]), as recjax's
`CrossInteraction` concatenates them. recjax keeps U (= W_kernels) and V in TorchRec's orientation,
and flax kernels [in, out] for the MLPs (kernel = weight^T).

Semantics a state dict does not carry, and what recjax assumes:
- Outputs. `DLRM_DCN.forward` returns logits [B, 1] (its OverArch ends in a plain nn.Linear);
  recjax's model returns logits [B] too, and its predictors apply the sigmoid.
- Feature order. TorchRec's SparseArch concatenates the features table by table, in the order of
  the EmbeddingBagCollection's tables, each table's `feature_names` in turn. The config's feature
  order must be that order (`torchrec_table_order`); TorchRec's DLRM example lists t_cat_0 ...
  t_cat_25, one feature each, as the dcnv2 presets do.
- Pooling. TorchRec's EmbeddingBagConfig pools by sum unless told otherwise; recjax's pooling is
  the config's (`FeatureConfig.pooling`).
- Widths. TorchRec's DLRM needs the dense arch to end in D units and its OverArch to have at
  least two layers; `check_layout` refuses other configs.

TorchRec's plain `DLRM` (not handled here) differs from facebookresearch/dlrm in two ways that
matter when importing it into recjax's "dot" interaction: its `InteractionArch` takes the pairwise
products of the strict upper triangle of the Gram matrix read row by row (triu_indices: pairs
(0,1), (0,2), ..., (0,T), (1,2), ...), where facebookresearch/dlrm and recjax read the strict
lower triangle row by row ((1,0), (2,0), (2,1), (3,0), ...): the same products in another order,
so the top MLP's first-layer columns would have to be permuted; and it outputs logits, where
facebookresearch/dlrm's top MLP ends in a sigmoid.

Pure NumPy (and JAX for the device buffers): torch is not needed to export or import; torch
tensors are accepted as values.
"""

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.interop.reference_dlrm import StateDictMismatchError
from recjax.interop.tables import as_numpy, filled_group, table_views
from recjax.models.dcnv2 import DCNv2Config
from recjax.models.dlrm import DLRM
from recjax.models.family import abstract_model

EMBEDDING_PREFIX = "sparse_arch.embedding_bag_collection.embedding_bags"
CROSSNET_PREFIX = "inter_arch.crossnet"
# recjax's cross-layer parameters and TorchRec's LowRankCrossNet parameter lists, in its order.
CROSS_KEYS = {"U": "W_kernels", "V": "V_kernels", "bias": "bias"}


def torchrec_table_order(config: DCNv2Config) -> tuple[str, ...]:
    """The tables in the order a TorchRec EmbeddingBagCollection must list them for its
    SparseArch to concatenate the features in the config's order.

    Raises:
      ValueError: a table is read by no feature (TorchRec would give it a feature of its own), or
        the features of a table are not next to each other in the config.
    """
    order: list[str] = []
    for feature in config.features:
        if order and order[-1] == feature.table:
            continue
        if feature.table in order:
            raise ValueError(
                f"{config.name}: TorchRec's SparseArch concatenates the features table by table; "
                f"the features of table {feature.table!r} must be next to each other in the "
                "config."
            )
        order.append(feature.table)
    unread = [table.name for table in config.tables if table.name not in order]
    if unread:
        raise ValueError(
            f"{config.name}: tables {unread} are read by no feature; TorchRec would give each a "
            "feature of its own."
        )
    return tuple(order)


def check_layout(config: DCNv2Config) -> None:
    """Raises ValueError unless TorchRec's DLRM_DCN can hold `config` (the message says why)."""
    if not isinstance(config, DCNv2Config):
        raise ValueError(
            f"{config.name}: TorchRec's DLRM_DCN layout is for DCN-V2 configs (DCNv2Config); got "
            f"{type(config).__name__}."
        )
    if config.bottom_mlp[-1] != config.embedding_dim:
        raise ValueError(
            f"{config.name}: TorchRec's DLRM needs the dense arch to end in the embedding dim "
            f"({config.embedding_dim}); got bottom_mlp={config.bottom_mlp}."
        )
    if len(config.top_mlp) < 2:
        raise ValueError(
            f"{config.name}: TorchRec's OverArch has at least two layers; got "
            f"top_mlp={config.top_mlp}."
        )
    torchrec_table_order(config)


def _mlp_keys(prefix: str, layer: int, name: str) -> str:
    return f"{prefix}._mlp.{layer}._linear.{'weight' if name == 'kernel' else 'bias'}"


def _over_arch_key(config: DCNv2Config, layer: int, name: str) -> str:
    """Every top layer but the last is a Perceptron of over_arch.model.0; the last is model.1."""
    if layer < len(config.top_mlp) - 1:
        return _mlp_keys("over_arch.model.0", layer, name)
    return f"over_arch.model.1.{'weight' if name == 'kernel' else 'bias'}"


def expected_shapes(config: DCNv2Config) -> dict[str, tuple[int, ...]]:
    """Every key of TorchRec's DLRM_DCN state dict for `config`, with its shape, in its order."""
    check_layout(config)
    shapes = {
        f"{EMBEDDING_PREFIX}.{name}.weight": (config.table(name).num_rows, config.embedding_dim)
        for name in torchrec_table_order(config)
    }
    widths = (config.dense_features, *config.bottom_mlp)
    for layer, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        shapes[_mlp_keys("dense_arch.model", layer, "kernel")] = (width_out, width_in)
        shapes[_mlp_keys("dense_arch.model", layer, "bias")] = (width_out,)
    width, rank = config.top_mlp_in_features, config.cross_rank
    for name, shape in (("W_kernels", (width, rank)), ("V_kernels", (rank, width))):
        for layer in range(config.cross_layers):
            shapes[f"{CROSSNET_PREFIX}.{name}.{layer}"] = shape
    for layer in range(config.cross_layers):
        shapes[f"{CROSSNET_PREFIX}.bias.{layer}"] = (width,)
    widths = (config.top_mlp_in_features, *config.top_mlp)
    for layer, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        shapes[_over_arch_key(config, layer, "kernel")] = (width_out, width_in)
        shapes[_over_arch_key(config, layer, "bias")] = (width_out,)
    return shapes


def _key_of(config: DCNv2Config, path: tuple) -> str:
    """The TorchRec key of a (non-table) recjax parameter path."""
    if path[0] == "dense_arch" and path[1] == "layers":
        return _mlp_keys("dense_arch.model", path[2], path[3])
    if path[0] == "over_arch" and path[1] == "layers":
        return _over_arch_key(config, path[2], path[3])
    if path[0] == "interaction" and path[1] == "layers" and path[3] in CROSS_KEYS:
        return f"{CROSSNET_PREFIX}.{CROSS_KEYS[path[3]]}.{path[2]}"
    raise ValueError(f"No TorchRec DLRM_DCN key maps to the model parameter {path}.")


def export_torchrec_state_dict(model: DLRM) -> dict[str, np.ndarray]:
    """The model's parameters under TorchRec's DLRM_DCN keys and layouts, in its module order.

    The tables are read-only NumPy views of the model's stacked buffers (no copy); the MLP weights
    are transposed copies, the cross-network weights copies.
    """
    config = model.config
    expected = expected_shapes(config)  # checks the layout
    tables = table_views(model.sparse_arch)
    values: dict[str, np.ndarray] = {
        f"{EMBEDDING_PREFIX}.{name}.weight": tables[name] for name in torchrec_table_order(config)
    }
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if path[0] == "sparse_arch":
            continue
        value = np.asarray(variable[...], np.float32)  # bfloat16 kernels widen exactly
        if path[-1] == "kernel":
            value = np.ascontiguousarray(value.T)  # flax [in, out] -> torch [out, in]
        values[_key_of(config, path)] = np.array(value)
    return {key: values[key] for key in expected}


def check_state_dict(config: DCNv2Config, state_dict: Mapping[str, object]) -> None:
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
            f"have; the first is {unexpected[0]!r} (shape {shape})."
        )
    for key, shape in expected.items():
        got = tuple(np.shape(state_dict[key]))
        if got != shape:
            raise StateDictMismatchError(
                f"{config.name}: {key!r} has shape {list(got)}, but the preset expects "
                f"{list(shape)}."
            )
        dtype = as_numpy(state_dict[key]).dtype
        if not np.issubdtype(dtype, np.floating):
            raise StateDictMismatchError(
                f"{config.name}: {key!r} has dtype {dtype}; expected a floating-point array."
            )


def import_torchrec_state_dict(config: DCNv2Config, state_dict: Mapping[str, object]) -> DLRM:
    """A recjax model of `config` holding the parameters of a TorchRec DLRM_DCN state dict.

    Values may be NumPy arrays, torch tensors or JAX arrays of any floating dtype (converted to
    float32). The state dict is checked against the preset before anything is allocated.

    Raises:
      StateDictMismatchError: a key is missing or unexpected, or a shape or dtype does not match
        (the message names the key and both shapes).
      ValueError: TorchRec's DLRM_DCN cannot hold the config (`check_layout`).
    """
    check_state_dict(config, state_dict)
    abstract = abstract_model(config)
    graphdef, abstract_state = nnx.split(abstract)
    tables = {
        name: state_dict[f"{EMBEDDING_PREFIX}.{name}.weight"]
        for name in torchrec_table_order(config)
    }
    filled = []
    for path, variable in nnx.to_flat_state(abstract_state):
        if path[:2] == ("sparse_arch", "tables") and len(path) == 3:
            value = filled_group(
                abstract.sparse_arch, path[2], variable.shape, variable.dtype, tables
            )
        else:
            array = np.asarray(as_numpy(state_dict[_key_of(config, path)]), np.float32)
            value = jnp.asarray(array.T if path[-1] == "kernel" else array)
            value = value.astype(variable.dtype)  # bfloat16 MLP kernels are rounded
        if value.shape != variable.shape or value.dtype != variable.dtype:
            # The preset and the model disagree: a recjax bug.
            raise AssertionError(
                f"{path}: built {value.shape} {value.dtype}, the model needs {variable.shape} "
                f"{variable.dtype}."
            )
        filled.append((path, variable.replace(value)))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))
