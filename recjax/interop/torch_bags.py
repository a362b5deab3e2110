"""What the PyTorch twins of the pooled-bag families (DeepFM, DCN-V2) share: one
`nn.EmbeddingBag(rows, D, mode="sum")` per table fed 2-D [B, C] ids (every bag full), batches
checked and converted once, and a predictor that applies the sigmoid to the twin's logits.

A twin module takes (dense [B, F] float32, K tensors [B, C_k] of ids in feature order) and returns
logits [B]. Inference runs under `torch.inference_mode()`.

torch is an optional extra; importing this module without it raises an ImportError saying how to
install it.
"""

from typing import NamedTuple

import numpy as np

from recjax.inputs.checks import (
    InvalidInputError,
    check_batch_shapes,
    describe_invalid_inputs,
    inputs_valid,
)
from recjax.inputs.features import Features, TableConfig
from recjax.interop.torch_twins import require_torch
from recjax.models.family import ModelConfig

torch = require_torch()
nn = torch.nn


def check_fixed_sum_bags(config: ModelConfig, twin: str) -> None:
    """Raises ValueError unless every sparse feature is a fixed-length, unweighted sum bag: what
    `nn.EmbeddingBag` runs on 2-D ids. The message names every feature it cannot represent."""
    problems = []
    for feature in config.features:
        reasons = []
        if feature.pooling != "sum":
            reasons.append(f"pooling={feature.pooling!r}")
        if feature.weighted:
            reasons.append("weighted=True")
        if not feature.fixed_length:
            reasons.append("fixed_length=False (ragged)")
        if reasons:
            problems.append(f"{feature.name!r} ({', '.join(reasons)})")
    if problems:
        raise ValueError(
            f"{config.name}: the PyTorch {twin} runs fixed-length, unweighted sum bags "
            f"(pooling='sum', weighted=False, fixed_length=True); it cannot represent the "
            f"feature(s) {', '.join(problems)}."
        )


def embedding_bag(table: TableConfig) -> nn.EmbeddingBag:
    """An uninitialized sum bag of the table's shape (`skip_init`: the full presets hold
    gigabytes of tables; the twin loads them right after)."""
    return torch.nn.utils.skip_init(nn.EmbeddingBag, table.num_rows, table.dim, mode="sum")


def linear_stack(in_features: int, layer_sizes: tuple[int, ...]) -> nn.Sequential:
    """nn.Sequential(Linear, ReLU, ..., Linear): ReLU between the layers, the last one linear."""
    widths = (in_features, *layer_sizes)
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(width_in, width_out))
    return nn.Sequential(*layers)


def tensor(array: np.ndarray) -> torch.Tensor:
    """A torch tensor owning a copy of `array` (state dicts may hold read-only views)."""
    return torch.from_numpy(np.array(array))


class TorchBatch(NamedTuple):
    """A batch as torch tensors: dense [B, F] float32, K contiguous [B, C_k] int32 id tensors."""

    dense: torch.Tensor
    sparse_ids: tuple[torch.Tensor, ...]


class BagTwinPredictor:
    """A recjax model's weights in a PyTorch twin module, run eagerly under inference mode.

    Takes a `Features` batch, as `recjax.runtime.inference.CompiledPredictor` does, and returns
    {head: [B] probabilities} as NumPy; rejects the batches it rejects (`InvalidInputError`).
    A family's `TorchPredictor` sets `config`, `head` and `module` (logits [B]).
    """

    config: ModelConfig
    head: str
    module: nn.Module

    def prepare(self, batch: Features) -> TorchBatch:
        """The batch as torch tensors, ids split per feature into [B, C_k] (one copy in all).

        Raises:
          ValueError: the batch's layout, shapes or dtypes are not the model's.
          InvalidInputError: an id is outside its table, a length is not the feature's capacity,
            or a dense value is not finite (the message names the first).
        """
        check_batch_shapes(self.config, batch)
        if not bool(inputs_valid(self.config, batch)):
            problem = describe_invalid_inputs(self.config, batch)
            raise InvalidInputError(f"{self.config.name}: {problem}")
        dense = torch.from_numpy(np.array(batch.dense))
        ids = np.asarray(batch.ids)
        sparse_ids = tuple(
            torch.from_numpy(np.array(ids[:, column : column + capacity]))
            for column, capacity in zip(batch.layout.columns, batch.layout.capacities, strict=True)
        )
        return TorchBatch(dense, sparse_ids)

    def __call__(self, batch: Features | TorchBatch) -> dict[str, np.ndarray]:
        """{head: [B] float32 probabilities} of a `Features` batch (checked and converted by
        `prepare`) or of a prepared `TorchBatch` (run as it is)."""
        inputs = batch if isinstance(batch, TorchBatch) else self.prepare(batch)
        with torch.inference_mode():
            probabilities = torch.sigmoid(self.module(inputs.dense, list(inputs.sparse_ids)))
        return {self.head: probabilities.numpy()}
