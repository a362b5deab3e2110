"""State dicts of deepctr-torch's DIN and DIEN (`gru_type="AUGRU"`) imported into recjax.

deepctr-torch (shenweichen/DeepCTR-Torch, 0.3.0) keeps these parameters (E = the width of an
item, the dims of the `history_feature_list` features concatenated; H_i the width of a layer):

    embedding_dict.<embedding name>.weight                 [rows, D]   one per table (SparseFeat
                                                                       `embedding_name`)
    out.bias                                               [1]         PredictionLayer's bias
  DIN:
    attention.local_att.dnn.linears.<i>.weight / .bias     [H_i, H_(i-1)]   first input: 4E
    attention.local_att.dnn.activation_layers.<i>.*        Dice or PReLU parameters, if any
    attention.local_att.dense.weight / .bias               [1, H_last]      the score
    dnn.linears.<i>.weight / .bias, dnn.activation_layers.<i>.*             the MLP
    dnn_linear.weight                                      [1, H_last]      no bias (out.bias)
  DIEN (AUGRU; the auxiliary net only with use_negsampling=True):
    interest_extractor.gru.{weight,bias}_{ih,hh}_l0        nn.GRU(E, E): gates r | z | n
    interest_extractor.auxiliary_net.linears.<i>.*         DNN(2E, [100, 50, 1], sigmoid)
    interest_evolution.attention.local_att.*               as DIN's attention
    interest_evolution.interest_evolution.rnn.{weight,bias}_{ih,hh}   AUGRUCell: r | u | n
    dnn.*, linear.weight                                   the MLP, then [1, H_last], no bias

Dice (`activation_layers.<i>`): alpha [H, 1], bn.{weight, bias, running_mean, running_var,
num_batches_tracked}; PReLU: weight [1] (one slope, broadcast to every unit here).

How the forward passes line up (docs/design/din-dien.md has the full comparison):
- The activation unit's input is [c, h, c - h, c * h] in deepctr-torch and [h, c, h - c, h * c]
  in recjax: with the first layer's kernel in blocks A, B, C, D (deepctr) the recjax blocks are
  B, A, -C, D, the same function exactly.
- deepctr-torch's MLP reads [sparse embeddings in feature order, interest, dense] in DIN (recjax's
  order) and [interest, sparse embeddings, dense] in DIEN (its first layer's columns are permuted).
- `nn.GRU`'s z gate is 1 - u: its z rows are negated. deepctr-torch's `AUGRUCell` uses the paper's
  u and registers `bias_hh` under the name `bias_ih` too, so a real state dict holds the same
  values under both keys (the cell adds the same bias twice); both keys are imported as given.
- A config must describe the deepctr model: its pooled features are the SparseFeat columns in
  order, its candidate features the `history_feature_list` and its behaviour features the
  matching `hist_` columns in that order, `dense_features` the DenseFeat dimensions summed,
  `mlp` = (*dnn_hidden_units, 1), `attention_mlp` = att_hidden_size (DIN) or att_hidden_units
  (DIEN), the activations and softmax as in deepctr-torch (DIN: `att_weight_normalization` is
  `attention_softmax`), `dice_affine=True` where deepctr's Dice has trained scales and shifts,
  DIEN with `attention="mlp"`, `gru_hidden` = E, and `auxiliary_loss="mlp"` with
  `auxiliary_mlp=(100, 50)` for a model trained with negative sampling.

A state dict holds weights only. Tables are matched by name (`embedding_names` maps a recjax table
to deepctr's embedding name where they differ). torch is not needed: values may be NumPy arrays,
torch tensors or JAX arrays.
"""

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.models.dien import DIEN, DIENConfig
from recjax.models.din import DIN, DINConfig
from recjax.models.family import abstract_model

Path = tuple
Transform = Callable[[Callable[[str], np.ndarray]], np.ndarray]


class StateDictMismatchError(ValueError):
    """A state dict does not fit the config: a missing or unexpected key, a wrong shape, or a
    trained Dice scale for a config without one."""


def _as_numpy(value) -> np.ndarray:
    """A NumPy view of a NumPy array, torch tensor (detached, on the CPU) or JAX array."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _activation_keys(prefix: str, name: str, width: int) -> dict[str, tuple[int, ...]]:
    if name == "dice":
        keys = {f"{prefix}.alpha": (width, 1)}
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.bn.{suffix}"] = (width,)
        keys[f"{prefix}.bn.num_batches_tracked"] = ()
        return keys
    if name == "prelu":
        return {f"{prefix}.weight": (1,)}
    return {}


class _Plan:
    """The deepctr-torch keys a config expects (with shapes), and how each recjax variable is made
    from them."""

    def __init__(self, config):
        self.config = config
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.values: dict[Path, Transform] = {}

    def linear(self, key: str, path: Path, width_in: int, width_out: int, bias: str | None):
        """nn.Linear `key` (weight [out, in]) -> recjax kernel [in, out] and bias at `path`;
        `bias` names the key of the bias (None: `key`.bias)."""
        bias_key = bias or f"{key}.bias"
        self.shapes[f"{key}.weight"] = (width_out, width_in)
        self.shapes[bias_key] = (width_out,)
        self.values[(*path, "kernel")] = lambda get: get(f"{key}.weight").T
        self.values[(*path, "bias")] = lambda get: get(bias_key)

    def activation(self, key: str, path: Path, name: str, width: int):
        self.shapes |= _activation_keys(key, name, width)
        if name == "dice":
            self.values[(*path, "alpha")] = lambda get: get(f"{key}.alpha")[:, 0]
            self.values[(*path, "normalize", "mean")] = lambda get: get(f"{key}.bn.running_mean")
            self.values[(*path, "normalize", "var")] = lambda get: get(f"{key}.bn.running_var")
            if self.config.dice_affine:
                self.values[(*path, "normalize", "scale")] = lambda get: get(f"{key}.bn.weight")
                self.values[(*path, "normalize", "bias")] = lambda get: get(f"{key}.bn.bias")
            else:
                self.values[(*path, "normalize", "_identity_check")] = _identity_affine(key)
        elif name == "prelu":
            self.values[(*path, "alpha")] = lambda get: np.broadcast_to(
                get(f"{key}.weight"), (width,)
            )

    def feed_forward(
        self,
        prefix: str,
        path: Path,
        widths: tuple[int, ...],
        activation: str,
        last: tuple[str, str | None],
    ):
        """deepctr's DNN `prefix` (linears, activation_layers) for all but the last layer, whose
        weight and bias keys are `last`; recjax's FeedForward at `path`."""
        pairs = list(zip(widths[:-1], widths[1:], strict=True))
        for index, (width_in, width_out) in enumerate(pairs[:-1]):
            self.linear(
                f"{prefix}.linears.{index}", (*path, "layers", index), width_in, width_out, None
            )
            self.activation(
                f"{prefix}.activation_layers.{index}",
                (*path, "activations", index),
                activation,
                width_out,
            )
        weight_key, bias_key = last
        self.linear(weight_key, (*path, "layers", len(pairs) - 1), *pairs[-1], bias_key)

    def tables(self, embedding_names: Mapping[str, str]):
        for table in self.config.tables:
            name = embedding_names.get(table.name, table.name)
            self.shapes[f"embedding_dict.{name}.weight"] = (table.num_rows, table.dim)

    def attention_unit(self, prefix: str, path: Path, width: int):
        """deepctr's LocalActivationUnit over [c, h, c - h, c * h] -> recjax's over
        [h, c, h - c, h * c]: first-layer blocks (A, B, C, D) -> (B, A, -C, D)."""
        config = self.config
        widths = (4 * width, *config.attention_mlp, 1)
        self.feed_forward(
            f"{prefix}.dnn",
            path,
            widths,
            config.attention_activation,
            (f"{prefix}.dense", None),
        )
        first_key = f"{prefix}.dnn.linears.0.weight"

        def reordered(get):
            a, b, c, d = np.split(get(first_key).T, 4, axis=0)
            return np.concatenate([b, a, -c, d], axis=0)

        self.values[(*path, "layers", 0, "kernel")] = reordered


def _identity_affine(key: str) -> Transform:
    """A check, not a value: deepctr's Dice has a BatchNorm scale and shift, which a config with
    dice_affine=False can only take when they are the identity (1 and 0)."""

    def check(get):
        if not (np.all(get(f"{key}.bn.weight") == 1) and np.all(get(f"{key}.bn.bias") == 0)):
            raise StateDictMismatchError(
                f"{key}.bn has a trained scale or shift (weight != 1 or bias != 0); import it "
                "into a config with dice_affine=True."
            )
        return None

    return check


def _mlp(plan: _Plan, config, first_layer: Callable[[np.ndarray], np.ndarray], linear_key: str):
    hidden = config.mlp[:-1]
    if not hidden:
        raise ValueError(
            f"{config.name}: a deepctr-torch DNN has at least one hidden layer; got "
            f"mlp={config.mlp}."
        )
    widths = (config.mlp_in_features, *config.mlp)
    plan.feed_forward(
        "dnn", ("over_arch",), widths, config.mlp_activation, (linear_key, "out.bias")
    )
    plan.values[("over_arch", "layers", 0, "kernel")] = lambda get: first_layer(
        get("dnn.linears.0.weight").T
    )


def _din_plan(config: DINConfig, embedding_names: Mapping[str, str]) -> _Plan:
    plan = _Plan(config)
    plan.tables(embedding_names)
    plan.attention_unit("attention.local_att", ("attention", "mlp"), config.item_width)
    _mlp(plan, config, lambda kernel: kernel, "dnn_linear")
    return plan


def _gru(plan: _Plan, prefix: str, suffix: str, path: Path, width: int, hidden: int, flip: bool):
    """An nn.GRU (`flip`: z = 1 - u, rows negated) or AUGRUCell at `prefix` -> recjax's at
    `path`."""
    sign = np.ones(3 * hidden, np.float32)
    if flip:
        sign[hidden : 2 * hidden] = -1.0
    for kind, width_in in (("ih", width), ("hh", hidden)):
        weight, bias = f"{prefix}.weight_{kind}{suffix}", f"{prefix}.bias_{kind}{suffix}"
        name = "input" if kind == "ih" else "hidden"
        plan.shapes[weight] = (3 * hidden, width_in)
        plan.shapes[bias] = (3 * hidden,)
        plan.values[(*path, f"{name}_kernel")] = lambda get, w=weight: get(w).T * sign
        plan.values[(*path, f"{name}_bias")] = lambda get, b=bias: get(b) * sign


def _dien_plan(config: DIENConfig, embedding_names: Mapping[str, str]) -> _Plan:
    width, hidden = config.item_width, config.gru_hidden
    if config.attention != "mlp" or hidden != width:
        raise ValueError(
            f"{config.name}: deepctr-torch's DIEN scores with the activation unit and a GRU as "
            f"wide as an item; import it into a config with attention='mlp' and gru_hidden="
            f"{width}; got attention={config.attention!r}, gru_hidden={hidden}."
        )
    plan = _Plan(config)
    plan.tables(embedding_names)
    _gru(plan, "interest_extractor.gru", "_l0", ("interest_extractor",), width, hidden, True)
    _gru(
        plan,
        "interest_evolution.interest_evolution.rnn",
        "",
        ("interest_evolution",),
        hidden,
        hidden,
        False,
    )
    plan.attention_unit("interest_evolution.attention.local_att", ("attention", "mlp"), hidden)
    if config.auxiliary_loss == "mlp":
        widths = (hidden + width, *config.auxiliary_mlp, 1)
        last = len(widths) - 2
        plan.feed_forward(
            "interest_extractor.auxiliary_net",
            ("auxiliary_net",),
            widths,
            "sigmoid",
            (f"interest_extractor.auxiliary_net.linears.{last}", None),
        )
    pooled = config.pooled_width

    def hist_first_to_recjax(kernel):  # rows [h', sparse, dense] -> [sparse, h', dense]
        return np.concatenate(
            [kernel[hidden : hidden + pooled], kernel[:hidden], kernel[hidden + pooled :]], axis=0
        )

    _mlp(plan, config, hist_first_to_recjax, "linear")
    return plan


def din_shapes(
    config: DINConfig, embedding_names: Mapping[str, str] | None = None
) -> dict[str, tuple[int, ...]]:
    """Every key of the deepctr-torch DIN state dict that `config` describes, with its shape."""
    return dict(_din_plan(config, embedding_names or {}).shapes)


def dien_shapes(
    config: DIENConfig, embedding_names: Mapping[str, str] | None = None
) -> dict[str, tuple[int, ...]]:
    """Every key of the deepctr-torch DIEN (AUGRU) state dict `config` describes, with its shape."""
    return dict(_dien_plan(config, embedding_names or {}).shapes)


def _check(config, expected: dict, state_dict: Mapping[str, object]) -> None:
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise StateDictMismatchError(
            f"{config.name}: the state dict lacks {len(missing)} key(s) the config needs; the "
            f"first is {missing[0]!r} (expected shape {list(expected[missing[0]])})."
        )
    unexpected = [key for key in state_dict if key not in expected]
    if unexpected:
        hint = ""
        if any("auxiliary_net" in key for key in unexpected):
            hint = " (a model trained with negative sampling: use auxiliary_loss='mlp')"
        raise StateDictMismatchError(
            f"{config.name}: the state dict holds {len(unexpected)} key(s) the config does not "
            f"have; the first is {unexpected[0]!r}{hint}."
        )
    for key, shape in expected.items():
        got = tuple(np.shape(state_dict[key]))
        if got != shape:
            raise StateDictMismatchError(
                f"{config.name}: {key!r} has shape {list(got)}, but the config expects "
                f"{list(shape)}."
            )


@functools.partial(jax.jit, donate_argnums=0)
def _write_rows(stacked: jax.Array, block: jax.Array, first_row: jax.Array) -> jax.Array:
    return jax.lax.dynamic_update_slice(stacked, block, (first_row, 0))


def _import(config, plan: _Plan, state_dict, embedding_names: Mapping[str, str]):
    _check(config, plan.shapes, state_dict)

    def get(key: str) -> np.ndarray:
        return np.asarray(_as_numpy(state_dict[key]), np.float32)

    for path, transform in plan.values.items():
        if path[-1] == "_identity_check":
            transform(get)
    abstract = abstract_model(config)
    graphdef, state = nnx.split(abstract)
    sparse_arch = abstract.sparse_arch
    filled = []
    for path, variable in nnx.to_flat_state(state):
        if path[:2] == ("sparse_arch", "tables"):
            value = jax.jit(lambda shape=variable.shape: jnp.zeros(shape, jnp.float32))()
            for table in config.tables:
                if sparse_arch.table_group[table.name] != path[2]:
                    continue
                name = embedding_names.get(table.name, table.name)
                block = get(f"embedding_dict.{name}.weight")
                value = _write_rows(value, block, jnp.int32(sparse_arch.table_offset[table.name]))
        elif path in plan.values:
            value = jnp.asarray(np.ascontiguousarray(plan.values[path](get), np.float32))
        else:
            raise ValueError(f"{config.name}: no deepctr-torch key maps to the variable {path}.")
        if value.shape != variable.shape:
            raise AssertionError(f"{path}: built {value.shape}, the model needs {variable.shape}.")
        filled.append((path, variable.replace(value)))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def import_din_state_dict(
    config: DINConfig,
    state_dict: Mapping[str, object],
    embedding_names: Mapping[str, str] | None = None,
) -> DIN:
    """A recjax DIN of `config` holding a deepctr-torch DIN's parameters (see the module
    docstring for the config that describes a deepctr model).

    Raises:
      StateDictMismatchError: a key is missing or unexpected, a shape differs (named), or a Dice
        has a trained affine part and the config has dice_affine=False.
    """
    names = embedding_names or {}
    return _import(config, _din_plan(config, names), state_dict, names)


def import_dien_state_dict(
    config: DIENConfig,
    state_dict: Mapping[str, object],
    embedding_names: Mapping[str, str] | None = None,
) -> DIEN:
    """A recjax DIEN of `config` holding a deepctr-torch DIEN's (`gru_type="AUGRU"`) parameters.

    Raises:
      ValueError: the config cannot describe a deepctr-torch DIEN (attention or hidden size).
      StateDictMismatchError: as `import_din_state_dict`.
    """
    names = embedding_names or {}
    return _import(config, _dien_plan(config, names), state_dict, names)
