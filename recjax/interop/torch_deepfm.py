"""An eager PyTorch DeepFM built the way PyTorch users build it, running a recjax model's weights.

One `nn.EmbeddingBag(rows, D, mode="sum")` per embedding table and one `nn.EmbeddingBag(rows, 1)`
per first-order table (`nn.ModuleDict`s keyed by table name), an `nn.Linear(F, 1)` for the dense
features' first-order weights and the bias, an `nn.Parameter` [F, D] for the dense fields' vectors
(when the dense features are fields), and the deep MLP as `nn.Sequential(Linear, ReLU, ...,
Linear)`; the FM term by the same sum-of-squares identity as deepctr's `FM` layer. Inference runs
under `torch.inference_mode()`; the module returns logits and the predictor applies the sigmoid.
This is the "deepfm" family's twin in `recjax.interop.torch_twins`.

Shapes: `B` batch, `F` dense features, `K` sparse features, `C_k` ids per bag of feature k, `D`
embedding dim.
"""

import warnings

import numpy as np

from recjax.interop.tables import table_views
from recjax.interop.torch_bags import (
    BagTwinPredictor,
    TorchBatch,
    check_fixed_sum_bags,
    embedding_bag,
    linear_stack,
    tensor,
    torch,
)
from recjax.models.deepfm import FIRST_ORDER_SUFFIX, DeepFM, DeepFMConfig

nn = torch.nn

__all__ = ["TorchBatch", "TorchDeepFM", "TorchPredictor"]


class TorchDeepFM(nn.Module):
    """DeepFM in eager PyTorch.

    Inputs  dense [B, F] float32, and K tensors [B, C_k] of ids, in feature order.
    Output  logits [B] float32.

    The tables are allocated uninitialized: load a state dict before use, e.g. with `from_recjax`.
    """

    def __init__(self, config: DeepFMConfig):
        check_fixed_sum_bags(config, "DeepFM")
        super().__init__()
        self.dense_as_fields = config.dense_as_fields
        self.tables = [feature.table for feature in config.features]
        self.embeddings = nn.ModuleDict(
            {table.name: embedding_bag(table) for table in config.embedding_tables}
        )
        self.first_order = nn.ModuleDict(
            {table.name: embedding_bag(table) for table in config.first_order_tables}
        )
        self.dense_linear = nn.Linear(config.dense_features, 1)  # first-order weights and bias
        if config.dense_as_fields:
            self.dense_embedding = nn.Parameter(
                torch.empty(config.dense_features, config.embedding_dim)
            )
        self.deep = linear_stack(config.deep_in_features, config.deep_mlp)

    @classmethod
    def from_recjax(cls, model: DeepFM) -> "TorchDeepFM":
        """The twin of `model`, holding a copy of its weights (strict `load_state_dict`).

        Raises ValueError (features the twin cannot run) before reading any weight.
        """
        module = cls(model.config)
        state_dict = {}
        with warnings.catch_warnings():
            # Table views are read-only; torch only reads them, copying each into its parameter.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            for name, view in table_views(model.sparse_arch).items():
                prefix = "first_order" if name.endswith(FIRST_ORDER_SUFFIX) else "embeddings"
                state_dict[f"{prefix}.{name}.weight"] = torch.from_numpy(view)
        state_dict["dense_linear.weight"] = tensor(np.asarray(model.dense_weight[...])[None, :])
        state_dict["dense_linear.bias"] = tensor(np.asarray(model.bias[...]).reshape(1))
        if model.config.dense_as_fields:
            state_dict["dense_embedding"] = tensor(np.asarray(model.dense_embedding[...]))
        for index, layer in enumerate(model.deep.layers):
            state_dict[f"deep.{2 * index}.weight"] = tensor(np.asarray(layer.kernel[...]).T)
            state_dict[f"deep.{2 * index}.bias"] = tensor(np.asarray(layer.bias[...]))
        module.load_state_dict(state_dict, strict=True)
        return module.eval()

    def forward(self, dense: torch.Tensor, sparse_ids: list[torch.Tensor]) -> torch.Tensor:
        embedded = torch.stack(
            [self.embeddings[t](ids) for t, ids in zip(self.tables, sparse_ids, strict=True)],
            dim=1,
        )  # [B, K, D]
        first_order = self.dense_linear(dense)[:, 0]
        for table, ids in zip(self.tables, sparse_ids, strict=True):
            first_order = first_order + self.first_order[table + FIRST_ORDER_SUFFIX](ids)[:, 0]
        if self.dense_as_fields:
            fields = torch.cat([dense.unsqueeze(2) * self.dense_embedding, embedded], dim=1)
            deep_input = fields.flatten(1)
        else:
            fields = embedded
            deep_input = torch.cat([dense, embedded.flatten(1)], dim=1)
        square_of_sum = fields.sum(dim=1).pow(2)  # [B, D]
        sum_of_squares = fields.pow(2).sum(dim=1)  # [B, D]
        fm = 0.5 * (square_of_sum - sum_of_squares).sum(dim=1)
        return first_order + fm + self.deep(deep_input)[:, 0]


class TorchPredictor(BagTwinPredictor):
    """A recjax DeepFM's weights in `TorchDeepFM`: {"click": [B] probabilities} as NumPy.

    Example:
        >>> predictor = TorchPredictor(model)   # ValueError first if the twin cannot run it
        >>> predictor(batch)["click"]           # [B] click probabilities, a NumPy array
        >>> inputs = predictor.prepare(batch)   # once, outside any timed region
        >>> predictor(inputs)["click"]          # the same, with no conversion or check
    """

    def __init__(self, model: DeepFM):
        self.config: DeepFMConfig = model.config
        (self.head,) = self.config.heads
        self.module = TorchDeepFM.from_recjax(model)
