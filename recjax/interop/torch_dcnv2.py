"""An eager PyTorch DCN-V2 (DLRM-v2) built as TorchRec builds it, running a recjax model's weights.

The module tree is TorchRec's `DLRM_DCN` (`torchrec.models.dlrm`), written in plain PyTorch so
that torchrec and fbgemm are not needed: `sparse_arch.embedding_bag_collection.embedding_bags`
holds one `nn.EmbeddingBag(rows, D, mode="sum")` per table, `dense_arch` and `over_arch` are
TorchRec MLPs (Perceptrons: `_linear` then ReLU), and `inter_arch.crossnet` is TorchRec's
`LowRankCrossNet` (`W_kernels`, `V_kernels`, `bias`). Its state dict therefore has exactly the
keys and shapes of TorchRec's, and the recjax weights arrive through
`recjax.interop.torchrec_dlrm_dcn.export_torchrec_state_dict` and a strict `load_state_dict`.
Inference runs under `torch.inference_mode()`; the module returns logits, as TorchRec's does, and
the predictor applies the sigmoid. This is the "dcnv2" family's twin in
`recjax.interop.torch_twins`.

Shapes: `B` batch, `F` dense features, `K` sparse features, `C_k` ids per bag of feature k, `D`
embedding dim, `N` = (K + 1) D the cross-network width, `r` its rank.
"""

import warnings

from recjax.interop.torch_bags import (
    BagTwinPredictor,
    TorchBatch,
    check_fixed_sum_bags,
    embedding_bag,
    torch,
)
from recjax.interop.torchrec_dlrm_dcn import (
    check_layout,
    export_torchrec_state_dict,
    torchrec_table_order,
)
from recjax.models.dcnv2 import DCNv2Config
from recjax.models.dlrm import DLRM

nn = torch.nn

__all__ = ["TorchBatch", "TorchDCNv2", "TorchPredictor"]


class Perceptron(nn.Module):
    """torchrec.modules.mlp.Perceptron with ReLU: relu(linear(x))."""

    def __init__(self, in_size: int, out_size: int):
        super().__init__()
        self._linear = nn.Linear(in_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self._linear(x))


class MLP(nn.Module):
    """torchrec.modules.mlp.MLP: Perceptrons in `_mlp`, ReLU after every layer."""

    def __init__(self, in_size: int, layer_sizes: tuple[int, ...]):
        super().__init__()
        widths = (in_size, *layer_sizes)
        self._mlp = nn.Sequential(
            *(Perceptron(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mlp(x)


class EmbeddingBagCollection(nn.Module):
    """One sum bag per table in `embedding_bags`, keyed by table name, in TorchRec's order."""

    def __init__(self, config: DCNv2Config, table_order: tuple[str, ...]):
        super().__init__()
        self.embedding_bags = nn.ModuleDict(
            {name: embedding_bag(config.table(name)) for name in table_order}
        )


class SparseArch(nn.Module):
    """K id tensors [B, C_k] -> [B, K, D]: each feature's bag summed in its table."""

    def __init__(self, config: DCNv2Config, table_order: tuple[str, ...]):
        super().__init__()
        self.embedding_bag_collection = EmbeddingBagCollection(config, table_order)
        self._tables = [feature.table for feature in config.features]

    def forward(self, sparse_ids: list[torch.Tensor]) -> torch.Tensor:
        bags = self.embedding_bag_collection.embedding_bags
        pooled = [bags[table](ids) for table, ids in zip(self._tables, sparse_ids, strict=True)]
        return torch.stack(pooled, dim=1)


class LowRankCrossNet(nn.Module):
    """torchrec.modules.crossnet.LowRankCrossNet: x_{l+1} = x_0 * (W_l (V_l x_l) + b_l) + x_l."""

    def __init__(self, in_features: int, num_layers: int, low_rank: int):
        super().__init__()
        self.W_kernels = nn.ParameterList(
            nn.Parameter(torch.empty(in_features, low_rank)) for _ in range(num_layers)
        )
        self.V_kernels = nn.ParameterList(
            nn.Parameter(torch.empty(low_rank, in_features)) for _ in range(num_layers)
        )
        self.bias = nn.ParameterList(
            nn.Parameter(torch.empty(in_features)) for _ in range(num_layers)
        )

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, v, b in zip(self.W_kernels, self.V_kernels, self.bias, strict=True):
            x = x0 * (nn.functional.linear(nn.functional.linear(x, v), w) + b) + x
        return x


class InteractionDCNArch(nn.Module):
    """dense [B, D], sparse [B, K, D] -> the cross network over [B, (K + 1) D]."""

    def __init__(self, crossnet: LowRankCrossNet):
        super().__init__()
        self.crossnet = crossnet

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        combined = torch.cat((dense.unsqueeze(1), sparse), dim=1)
        return self.crossnet(combined.reshape(dense.shape[0], -1))


class OverArch(nn.Module):
    """A TorchRec MLP over all layers but the last, then a plain nn.Linear (the logit)."""

    def __init__(self, in_features: int, layer_sizes: tuple[int, ...]):
        super().__init__()
        self.model = nn.Sequential(
            MLP(in_features, layer_sizes[:-1]), nn.Linear(layer_sizes[-2], layer_sizes[-1])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DenseArch(nn.Module):
    def __init__(self, in_features: int, layer_sizes: tuple[int, ...]):
        super().__init__()
        self.model = MLP(in_features, layer_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class TorchDCNv2(nn.Module):
    """TorchRec's DLRM_DCN module tree in eager PyTorch.

    Inputs  dense [B, F] float32, and K tensors [B, C_k] of ids, in feature order.
    Output  logits [B] float32.

    Parameters are allocated uninitialized: load a state dict before use, e.g. with `from_recjax`.

    Example:
        >>> module = TorchDCNv2.from_recjax(model)
        >>> with torch.inference_mode():
        ...     module(dense, [ids_0, ids_1, ...]).shape
        torch.Size([B])
    """

    def __init__(self, config: DCNv2Config):
        check_fixed_sum_bags(config, "DCN-V2")
        check_layout(config)
        super().__init__()
        self.sparse_arch = SparseArch(config, torchrec_table_order(config))
        self.dense_arch = DenseArch(config.dense_features, config.bottom_mlp)
        width = config.top_mlp_in_features
        self.inter_arch = InteractionDCNArch(
            LowRankCrossNet(width, config.cross_layers, config.cross_rank)
        )
        self.over_arch = OverArch(width, config.top_mlp)

    @classmethod
    def from_recjax(cls, model: DLRM) -> "TorchDCNv2":
        """The twin of `model`, holding a copy of its weights (strict `load_state_dict`).

        Raises ValueError (features or widths the twin cannot hold) before reading any weight.
        """
        module = cls(model.config)
        with warnings.catch_warnings():
            # The exported tables are read-only views of the recjax buffers; torch only reads them
            # here, copying each into its own parameter.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            state_dict = {
                key: torch.from_numpy(value)
                for key, value in export_torchrec_state_dict(model).items()
            }
        module.load_state_dict(state_dict, strict=True)
        return module.eval()

    def forward(self, dense: torch.Tensor, sparse_ids: list[torch.Tensor]) -> torch.Tensor:
        embedded_dense = self.dense_arch(dense)  # [B, D]
        embedded_sparse = self.sparse_arch(sparse_ids)  # [B, K, D]
        interaction = self.inter_arch(embedded_dense, embedded_sparse)  # [B, N]
        return self.over_arch(interaction)[:, 0]


class TorchPredictor(BagTwinPredictor):
    """A recjax DCN-V2's weights in `TorchDCNv2`: {"click": [B] probabilities} as NumPy.

    Example:
        >>> predictor = TorchPredictor(model)   # ValueError first if the twin cannot run it
        >>> predictor(batch)["click"]           # [B] click probabilities, a NumPy array
        >>> inputs = predictor.prepare(batch)   # once, outside any timed region
        >>> predictor(inputs)["click"]          # the same, with no conversion or check
    """

    def __init__(self, model: DLRM):
        self.config: DCNv2Config = model.config
        (self.head,) = self.config.heads
        self.module = TorchDCNv2.from_recjax(model)
