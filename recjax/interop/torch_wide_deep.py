"""An eager PyTorch Wide & Deep built the way PyTorch users build it, running a recjax model's
weights.

One `nn.EmbeddingBag(rows, D, mode="sum")` per embedding table and one `nn.EmbeddingBag(rows, 1,
mode="sum")` per wide table (both in `nn.ModuleDict`s keyed by table name, so features that share a
table share the module), an `nn.Sequential` of `nn.Linear` + ReLU for the deep part, and a sigmoid
over the deep logit plus the summed wide weights. The weights arrive through `load_state_dict`;
inference runs under `torch.inference_mode()`. This is the "wide_deep" family's twin in
`recjax.interop.torch_twins`; `recjax.interop.torch_multitask_wide_deep` reuses its inputs.

The twin runs fixed-length, unweighted sum bags (the 2-D input form of nn.EmbeddingBag, each row
one bag of C ids); other configs are refused before anything is copied (`check_supported`).

Shapes: `B` batch, `F` dense features, `K` sparse features, `C_k` ids per bag of feature k, `D`
embedding dim.

torch is an optional extra; importing this module without it raises an ImportError saying how to
install it.
"""

import warnings
from typing import NamedTuple

import numpy as np

from recjax.inputs.features import Features
from recjax.interop.torch_twins import require_torch
from recjax.interop.twin_weights import checked, feature_ids, sequential_state, table_weight
from recjax.models.family import ModelConfig
from recjax.models.wide_deep import WideDeep, WideDeepConfig

torch = require_torch()
nn = torch.nn


def check_supported(config: ModelConfig) -> None:
    """Raises ValueError unless the twin can run `config`'s sparse features.

    Every feature must be a fixed-length (`fixed_length=True`), unweighted (`weighted=False`) sum
    bag (`pooling="sum"`), and every table name a valid nn.ModuleDict key (no ".", not an
    attribute of nn.ModuleDict such as "keys"). The message
    names every feature or table it cannot represent and why.
    """
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
            problems.append(f"feature {feature.name!r} ({', '.join(reasons)})")
    problems += [
        f"table {table.name!r} (not a valid nn.ModuleDict key)"
        for table in config.tables
        if "." in table.name or not table.name or hasattr(nn.ModuleDict, table.name)
    ]
    if problems:
        raise ValueError(
            f"{config.name}: the PyTorch twin runs fixed-length, unweighted sum bags (pooling="
            f"'sum', weighted=False, fixed_length=True) over tables whose names are valid "
            f"nn.ModuleDict keys (no '.'); it cannot represent {', '.join(problems)}."
        )


def embedding_bags(config: ModelConfig, tables: list[str]) -> nn.ModuleDict:
    """{table: nn.EmbeddingBag(rows, dim, mode="sum")} for each distinct name in `tables`,
    allocated uninitialized (`skip_init`: the tables are GBs; a state dict fills them)."""
    return nn.ModuleDict(
        {
            name: torch.nn.utils.skip_init(
                nn.EmbeddingBag, config.table(name).num_rows, config.table(name).dim, mode="sum"
            )
            for name in dict.fromkeys(tables)
        }
    )


def mlp(in_features: int, layer_sizes: tuple[int, ...], relu_last: bool) -> nn.Sequential:
    """nn.Sequential(Linear, ReLU, ..., Linear[, ReLU])."""
    widths = (in_features, *layer_sizes)
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(layer_sizes) - 1 or relu_last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def sparse_state(model) -> dict[str, np.ndarray]:
    """The tables of `model.sparse_arch` under "embeddings.<table>.weight" (tables read by
    features) and "wide.<table>.weight" (the config's `wide_tables`)."""
    config = model.config
    state = {
        f"embeddings.{feature.table}.weight": table_weight(model.sparse_arch, feature.table)
        for feature in config.features
    }
    for table in config.wide_tables:
        state[f"wide.{table}.weight"] = table_weight(model.sparse_arch, table)
    return state


def load(module: nn.Module, state: dict[str, np.ndarray]) -> nn.Module:
    """`module` with `state` loaded (every key, exactly), in eval mode."""
    with warnings.catch_warnings():
        # The tables are read-only views of the recjax buffers; load_state_dict copies them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        module.load_state_dict(
            {key: torch.from_numpy(value) for key, value in state.items()}, strict=True
        )
    return module.eval()


class TorchBatch(NamedTuple):
    """A batch as torch tensors: dense [B, F] float32, K contiguous [B, C_k] int32 id tensors."""

    dense: torch.Tensor
    sparse_ids: tuple[torch.Tensor, ...]


def prepare(config: ModelConfig, batch: Features) -> TorchBatch:
    """The batch, checked as the compiled predictor checks it, as torch tensors (one copy).

    Raises ValueError or InvalidInputError, as `recjax.runtime.inference.CompiledPredictor` does.
    """
    checked(config, batch)
    return TorchBatch(
        torch.from_numpy(np.array(batch.dense)),
        tuple(torch.from_numpy(ids) for ids in feature_ids(batch)),
    )


class TorchWideDeep(nn.Module):
    """Wide & Deep in eager PyTorch.

    Inputs  dense [B, F] float32, and K tensors [B, C_k] of ids, in feature order.
    Output  click probabilities [B] float32.

    Example:
        >>> module = TorchWideDeep.from_recjax(model)
        >>> with torch.inference_mode():
        ...     module(dense, [ids_0, ids_1, ...]).shape
        torch.Size([B])
    """

    def __init__(self, config: WideDeepConfig):
        check_supported(config)
        super().__init__()
        self.feature_tables = [feature.table for feature in config.features]
        self.wide_tables = list(config.wide_tables)
        self.embeddings = embedding_bags(config, self.feature_tables)
        self.wide = embedding_bags(config, self.wide_tables)
        self.deep = mlp(config.deep_in_features, config.deep_mlp, relu_last=False)

    @classmethod
    def from_recjax(cls, model: WideDeep) -> "TorchWideDeep":
        """The twin of `model`, holding a copy of its weights; ValueError first if it cannot run
        the config (`check_supported`)."""
        module = cls(model.config)
        return load(module, {**sparse_state(model), **sequential_state("deep", model.deep_arch)})

    def forward(self, dense: torch.Tensor, sparse_ids: list[torch.Tensor]) -> torch.Tensor:
        embedded = [
            self.embeddings[table](ids)
            for table, ids in zip(self.feature_tables, sparse_ids, strict=True)
        ]  # K x [B, D]
        logits = self.deep(torch.cat([dense, *embedded], dim=1)).squeeze(1)  # [B]
        if self.wide_tables:
            wide = [
                self.wide[table](ids)
                for table, ids in zip(self.wide_tables, sparse_ids, strict=True)
            ]  # K x [B, 1]
            logits = logits + torch.cat(wide, dim=1).sum(dim=1)
        return torch.sigmoid(logits)


class TorchPredictor:
    """A recjax Wide & Deep's weights in `TorchWideDeep`, run eagerly under
    `torch.inference_mode()`.

    Takes a `Features` batch, as `recjax.runtime.inference.CompiledPredictor` does, and returns
    {head: [B] probabilities} as NumPy; rejects the batches it rejects (`InvalidInputError`).

    Example:
        >>> predictor = TorchPredictor(model)   # ValueError first if the twin cannot run it
        >>> inputs = predictor.prepare(batch)   # once, outside any timed region
        >>> predictor(inputs)["click"]          # [B] probabilities, with no conversion or check
    """

    def __init__(self, model: WideDeep):
        self.config: WideDeepConfig = model.config
        (self.head,) = self.config.heads
        self.module = TorchWideDeep.from_recjax(model)

    def prepare(self, batch: Features) -> TorchBatch:
        return prepare(self.config, batch)

    def __call__(self, batch: Features | TorchBatch) -> dict[str, np.ndarray]:
        """{head: [B] float32 probabilities} of a `Features` batch (checked and converted by
        `prepare`) or of a prepared `TorchBatch` (run as it is)."""
        inputs = batch if isinstance(batch, TorchBatch) else self.prepare(batch)
        with torch.inference_mode():
            probabilities = self.module(inputs.dense, list(inputs.sparse_ids))
        return {self.head: probabilities.numpy()}
