"""An eager PyTorch NeuMF built the way PyTorch users build it, running a recjax NCF's weights.

Four `nn.Embedding`s (user and item, GMF and MLP), an `nn.Sequential` of `nn.Linear` + ReLU for
the MLP tower and an `nn.Linear` without bias for the NeuMF layer, as in the common PyTorch ports of
He et al.'s NeuMF; the weights arrive through `load_state_dict` and inference runs under
`torch.inference_mode()`. This is the "ncf" family's twin in `recjax.interop.torch_twins`. It runs
every config `NCFConfig` accepts (one id per feature, a table each).

Shapes: `B` batch, `D` GMF embedding dim, `D'` MLP embedding dim, `H` the tower's last width.

torch is an optional extra; importing this module without it raises an ImportError saying how to
install it.
"""

import warnings
from typing import NamedTuple

import numpy as np

from recjax.inputs.features import Features
from recjax.interop.torch_twins import require_torch
from recjax.interop.twin_weights import (
    checked,
    linear_state,
    sequential_state,
    table_weight,
)
from recjax.models.ncf import FEATURES, ITEM_GMF, ITEM_MLP, NCF, USER_GMF, USER_MLP, NCFConfig

torch = require_torch()
nn = torch.nn


def _tower(in_features: int, layer_sizes: tuple[int, ...]) -> nn.Sequential:
    """nn.Sequential(Linear, ReLU, ..., Linear, ReLU)."""
    widths = (in_features, *layer_sizes)
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*layers)


class TorchNCF(nn.Module):
    """NeuMF in eager PyTorch.

    Inputs  four [B] id tensors: user and item ids of the GMF tables, then of the MLP tables.
    Output  click probabilities [B] float32.

    Tables are allocated uninitialized (`torch.nn.utils.skip_init`): load a state dict before use,
    e.g. with `from_recjax`.

    Example:
        >>> module = TorchNCF.from_recjax(model)
        >>> with torch.inference_mode():
        ...     module(user_gmf, item_gmf, user_mlp, item_mlp).shape
        torch.Size([B])
    """

    def __init__(self, config: NCFConfig):
        super().__init__()

        def embedding(feature: str) -> nn.Embedding:
            table = config.table(config.feature(feature).table)
            return torch.nn.utils.skip_init(nn.Embedding, table.num_rows, table.dim)

        self.embed_user_gmf = embedding(USER_GMF)
        self.embed_item_gmf = embedding(ITEM_GMF)
        self.embed_user_mlp = embedding(USER_MLP)
        self.embed_item_mlp = embedding(ITEM_MLP)
        self.mlp = _tower(config.mlp_in_features, config.mlp_tower)
        self.predict_layer = nn.Linear(config.neumf_in_features, 1, bias=False)

    @classmethod
    def from_recjax(cls, model: NCF) -> "TorchNCF":
        """The twin of `model`, holding a copy of its weights."""
        config = model.config
        module = cls(config)
        state = {
            f"embed_{name}.weight": table_weight(model.sparse_arch, config.feature(name).table)
            for name in FEATURES
        }
        state.update(sequential_state("mlp", model.mlp_tower))
        state.update(linear_state("predict_layer", model.neumf_layer))
        with warnings.catch_warnings():
            # The tables are read-only views of the recjax buffer; load_state_dict copies them.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            module.load_state_dict(
                {key: torch.from_numpy(value) for key, value in state.items()}, strict=True
            )
        return module.eval()

    def forward(
        self,
        user_gmf: torch.Tensor,
        item_gmf: torch.Tensor,
        user_mlp: torch.Tensor,
        item_mlp: torch.Tensor,
    ) -> torch.Tensor:
        gmf = self.embed_user_gmf(user_gmf) * self.embed_item_gmf(item_gmf)  # [B, D]
        mlp = self.mlp(
            torch.cat([self.embed_user_mlp(user_mlp), self.embed_item_mlp(item_mlp)], dim=1)
        )  # [B, H]
        return torch.sigmoid(self.predict_layer(torch.cat([gmf, mlp], dim=1))).squeeze(1)


class TorchBatch(NamedTuple):
    """A batch as torch tensors: [B] int32 ids of each feature of `FEATURES`, in that order."""

    ids: tuple[torch.Tensor, ...]


class TorchPredictor:
    """A recjax NCF's weights in `TorchNCF`, run eagerly under `torch.inference_mode()`.

    Takes a `Features` batch, as `recjax.runtime.inference.CompiledPredictor` does, and returns
    {head: [B] probabilities} as NumPy; rejects the batches it rejects (`InvalidInputError`).

    Example:
        >>> predictor = TorchPredictor(model)
        >>> inputs = predictor.prepare(batch)   # once, outside any timed region
        >>> predictor(inputs)["click"]          # [B] probabilities, with no conversion or check
    """

    def __init__(self, model: NCF):
        self.config: NCFConfig = model.config
        (self.head,) = self.config.heads
        self.module = TorchNCF.from_recjax(model)

    def prepare(self, batch: Features) -> TorchBatch:
        """The batch as torch tensors: each feature's ids as a [B] tensor (one copy in all).

        Raises ValueError or InvalidInputError, as the compiled predictor does.
        """
        checked(self.config, batch)
        ids = np.asarray(batch.ids)
        columns = {name: batch.layout.columns[batch.layout.index(name)] for name in FEATURES}
        return TorchBatch(
            tuple(
                torch.from_numpy(np.ascontiguousarray(ids[:, columns[name]])) for name in FEATURES
            )
        )

    def __call__(self, batch: Features | TorchBatch) -> dict[str, np.ndarray]:
        """{head: [B] float32 probabilities} of a `Features` batch (checked and converted by
        `prepare`) or of a prepared `TorchBatch` (run as it is)."""
        inputs = batch if isinstance(batch, TorchBatch) else self.prepare(batch)
        with torch.inference_mode():
            probabilities = self.module(*inputs.ids)
        return {self.head: probabilities.numpy()}
