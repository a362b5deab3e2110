"""What the PyTorch twins of DIN and DIEN share: Dice, the MLPs, the embeddings, the inputs.

Written as PyTorch users write these models: one `nn.Embedding` per table (a table shared by the
candidate and the behaviours is one module used twice), `nn.Sequential` stacks of `nn.Linear` and
activation modules, Dice as an `nn.BatchNorm1d` (in eval mode: its running statistics) plus a
slope. recjax weights arrive as a state dict with these modules' keys (`export_*`) loaded with
`load_state_dict(strict=True)`; inference runs under `torch.inference_mode()`.

Shapes: `B` batch, `S` sequence length, `D` embedding dim, `E` item width, `H` a layer's width.

torch is an optional extra; importing this module without it raises an ImportError saying how to
install it.
"""

import warnings
from typing import NamedTuple

import numpy as np

from recjax.inputs.checks import (
    InvalidInputError,
    check_batch_shapes,
    describe_invalid_inputs,
    inputs_valid,
)
from recjax.inputs.features import Features
from recjax.interop.tables import table_array
from recjax.interop.torch_twins import require_torch
from recjax.layers.activations import FeedForward
from recjax.models.behaviour_sequence import BehaviourSequenceConfig

torch = require_torch()
nn = torch.nn


def check_supported(config: BehaviourSequenceConfig) -> None:
    """Raises ValueError naming the features the twins cannot run: weighted bags, and pooled
    features that are not fixed-length (the behaviour sequences are the only ragged inputs)."""
    problems = [
        feature.name
        for feature in config.pooled_features
        if feature.weighted or not feature.fixed_length
    ]
    if problems:
        raise ValueError(
            f"{config.name}: the PyTorch twin runs pooled features that are fixed-length and "
            f"unweighted (fixed_length=True, weighted=False); it cannot run {problems}."
        )


class Dice(nn.Module):
    """Dice over the last axis: sigmoid(BatchNorm(x)) x + (1 - sigmoid(BatchNorm(x))) alpha x."""

    def __init__(self, width: int, epsilon: float, affine: bool):
        super().__init__()
        self.bn = nn.BatchNorm1d(width, eps=epsilon, affine=affine)
        self.alpha = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(self.bn(x.reshape(-1, x.shape[-1]))).reshape(x.shape)
        return p * x + (1 - p) * self.alpha * x


class PReLU(nn.Module):
    """PReLU with one slope per unit of the last axis (nn.PReLU's channels are axis 1, which is
    the sequence axis of a [B, S, H] input)."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.full((width,), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x, self.weight * x)


def activation(name: str, width: int, config: BehaviourSequenceConfig) -> nn.Module:
    if name == "dice":
        return Dice(width, config.dice_epsilon, config.dice_affine)
    if name == "prelu":
        return PReLU(width)
    return nn.ReLU() if name == "relu" else nn.Sigmoid()


def mlp(
    in_features: int, layer_sizes: tuple[int, ...], name: str, config: BehaviourSequenceConfig
) -> nn.Sequential:
    """nn.Sequential(Linear, activation, ..., Linear): no activation after the last layer."""
    widths = (in_features, *layer_sizes)
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(layer_sizes) - 1:
            layers.append(activation(name, width_out, config))
    return nn.Sequential(*layers)


def embeddings(config: BehaviourSequenceConfig) -> nn.ModuleDict:
    """One nn.Embedding per table, uninitialized (load a state dict)."""
    return nn.ModuleDict(
        {
            table.name: torch.nn.utils.skip_init(nn.Embedding, table.num_rows, table.dim)
            for table in config.tables
        }
    )


def export_tables(model) -> dict[str, np.ndarray]:
    """{"embeddings.<table>.weight": [rows, D] float32}: read-only NumPy views of the stacked
    buffers (decoded copies of tables not stored as packed float32)."""
    return {
        f"embeddings.{table.name}.weight": table_array(model.sparse_arch, table.name)
        for table in model.config.tables
    }


def export_feed_forward(module: FeedForward, prefix: str, name: str) -> dict[str, np.ndarray]:
    """A recjax `FeedForward` under the keys of `mlp(...)`'s nn.Sequential (kernel = W^T)."""
    state = {}
    for index, layer in enumerate(module.layers):
        state[f"{prefix}.{2 * index}.weight"] = np.ascontiguousarray(
            np.asarray(layer.kernel[...]).T
        )
        state[f"{prefix}.{2 * index}.bias"] = np.array(layer.bias[...])
    for index, act in enumerate(module.activations):
        key = f"{prefix}.{2 * index + 1}"
        if name == "prelu":
            state[f"{key}.weight"] = np.array(act.alpha[...])
        elif name == "dice":
            normalize = act.normalize
            state[f"{key}.alpha"] = np.array(act.alpha[...])
            state[f"{key}.bn.running_mean"] = np.array(normalize.mean[...])
            state[f"{key}.bn.running_var"] = np.array(normalize.var[...])
            state[f"{key}.bn.num_batches_tracked"] = np.array(0, np.int64)
            if normalize.scale is not None:
                state[f"{key}.bn.weight"] = np.array(normalize.scale[...])
                state[f"{key}.bn.bias"] = np.array(normalize.bias[...])
    return state


def load(module: nn.Module, state: dict[str, np.ndarray]) -> nn.Module:
    """Loads `state` (NumPy) into `module` strictly; returns it in eval mode."""
    with warnings.catch_warnings():
        # The tables are read-only views of the recjax buffers; torch copies them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensors = {key: torch.from_numpy(value) for key, value in state.items()}
    module.load_state_dict(tensors, strict=True)
    return module.eval()


class TorchSequenceBatch(NamedTuple):
    """A batch as torch tensors: dense [B, F] float32, each feature's ids [B, C_k] int64 (0 past
    the length), and the behaviours' lengths [B] int64."""

    dense: torch.Tensor
    ids: dict[str, torch.Tensor]
    lengths: torch.Tensor


def pooled(
    module_embeddings: nn.ModuleDict, config: BehaviourSequenceConfig, inputs: TorchSequenceBatch
) -> list[torch.Tensor]:
    """[B, D] per pooled feature, in the config's order: the sum (or mean) of its C rows."""
    out = []
    for feature in config.pooled_features:
        rows = module_embeddings[feature.table](inputs.ids[feature.name])  # [B, C, D]
        out.append(rows.mean(1) if feature.pooling == "mean" else rows.sum(1))
    return out


class SequenceTwinPredictor:
    """A recjax DIN or DIEN's weights in its twin, run eagerly under `torch.inference_mode()`.

    Takes a `Features` batch, as `recjax.runtime.inference.CompiledPredictor` does, and returns
    {"click": [B] probabilities} as NumPy; rejects the batches it rejects (`InvalidInputError`).
    Subclasses set `module_class` (with a `from_recjax(model)` constructor).
    """

    module_class: type

    def __init__(self, model):
        self.config = model.config
        (self.head,) = self.config.heads
        check_supported(self.config)
        self.module = self.module_class.from_recjax(model)

    def prepare(self, batch: Features) -> TorchSequenceBatch:
        """The batch as torch tensors, ids past each length set to 0, checked first.

        Raises:
          ValueError: the batch's layout, shapes or dtypes are not the model's.
          InvalidInputError: an id is outside its table, a length outside [0, C] (or unequal
            to its lender's), or a dense value not finite (the message names the first).
        """
        check_batch_shapes(self.config, batch)
        if not bool(inputs_valid(self.config, batch)):
            raise InvalidInputError(
                f"{self.config.name}: {describe_invalid_inputs(self.config, batch)}"
            )
        ids, lengths = np.asarray(batch.ids), np.asarray(batch.lengths)
        by_feature = {}
        for index, feature in enumerate(self.config.features):
            column = batch.layout.columns[index]
            block = ids[:, column : column + feature.capacity]
            valid = np.arange(feature.capacity)[None, :] < lengths[:, index : index + 1]
            by_feature[feature.name] = torch.from_numpy(np.where(valid, block, 0).astype(np.int64))
        behaviour_lengths = lengths[:, batch.layout.index(self.config.behaviour_features[0])]
        return TorchSequenceBatch(
            dense=torch.from_numpy(np.array(batch.dense, np.float32)),
            ids=by_feature,
            lengths=torch.from_numpy(behaviour_lengths.astype(np.int64)),
        )

    def __call__(self, batch: Features | TorchSequenceBatch) -> dict[str, np.ndarray]:
        """{"click": [B] float32 probabilities} of a `Features` batch (checked and converted by
        `prepare`) or of a prepared `TorchSequenceBatch` (run as it is)."""
        inputs = batch if isinstance(batch, TorchSequenceBatch) else self.prepare(batch)
        with torch.inference_mode():
            probabilities = self.module(inputs)
        return {self.head: probabilities.numpy()}
