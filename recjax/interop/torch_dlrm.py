"""An eager PyTorch DLRM built the way PyTorch users build it, running a recjax model's weights.

One `nn.EmbeddingBag(rows, D, mode="sum")` per table, `nn.Linear` + ReLU MLPs in `nn.Sequential`s,
the same interaction ("cat" or "dot") and a sigmoid: the module layout of the reference DLRM
(facebookresearch/dlrm, `DLRM_Net`), so its state dict has the reference's keys and the recjax
weights arrive through `recjax.interop.reference_dlrm.export_reference_state_dict` and
`load_state_dict`. Inference runs under `torch.inference_mode()`.

Shapes: `B` batch, `F` dense features, `T` tables, `L` lookups per table, `D` embedding dim.

torch is an optional extra; importing this module without it raises an ImportError saying how to
install it.
"""

import os
import warnings
from typing import NamedTuple

import numpy as np

from recjax.inputs.data import Batch, check_batch_shapes
from recjax.interop.reference_dlrm import export_reference_state_dict
from recjax.models.dlrm import DLRM, DLRMConfig

INSTALL_HINT = "pip install -e '.[torch]' (torch 2.13.0, CPU)"

try:
    import torch
    from torch import nn
except ImportError as error:
    raise ImportError(
        f"The PyTorch baseline needs torch, which cannot be imported ({error}). Install it with "
        f"{INSTALL_HINT}."
    ) from error


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), the thread count of both frameworks."""
    return len(os.sched_getaffinity(0))


def set_torch_threads(num_threads: int) -> dict[str, int | str]:
    """Sets torch's intra-op and inter-op thread counts; returns both as torch reports them.

    Both are set to the same count as XLA's CPU thread pool uses (all usable cores). torch runs its
    intra-op work on OpenMP threads, which spin-wait between parallel regions: when other processes
    occupy the cores, its latency degrades far more than XLA's (tens to hundreds of ms at batch
    16-256 on a loaded 2-core machine, against about 1 ms when quiet).

    The inter-op count can only be set before torch has run parallel work; it is left alone when
    it already has the requested value.
    """
    if num_threads <= 0:
        raise ValueError(f"num_threads must be positive; got {num_threads}.")
    torch.set_num_threads(num_threads)
    if torch.get_num_interop_threads() != num_threads:
        torch.set_num_interop_threads(num_threads)
    return {
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
    }


def _mlp(in_features: int, layer_sizes: tuple[int, ...], last_activation: nn.Module):
    """nn.Sequential(Linear, ReLU, ..., Linear, last_activation): the reference's create_mlp."""
    widths = (in_features, *layer_sizes)
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(width_in, width_out))
        layers.append(last_activation if index == len(layer_sizes) - 1 else nn.ReLU())
    return nn.Sequential(*layers)


class TorchDLRM(nn.Module):
    """The DLRM network in eager PyTorch, with the reference DLRM's module names.

    Inputs  dense [B, F] float32, and T tensors [B, L] of ids (the 2-D input form of
            nn.EmbeddingBag: each row one bag of L ids).
    Output  click probabilities [B] float32.

    The embedding tables are allocated uninitialized (`torch.nn.utils.skip_init`: rmc1 and rmc2
    hold 4.1 GB of tables): load a state dict before use, e.g. with `from_recjax`.

    Example:
        >>> module = TorchDLRM.from_recjax(model)
        >>> with torch.inference_mode():
        ...     module(dense, list(ids.transpose(0, 1))).shape
        torch.Size([B])
    """

    def __init__(self, config: DLRMConfig):
        super().__init__()
        self.interaction = config.interaction
        self.emb_l = nn.ModuleList(
            torch.nn.utils.skip_init(nn.EmbeddingBag, table.num_rows, table.dim, mode="sum")
            for table in config.tables
        )
        self.bot_l = _mlp(config.dense_features, config.bottom_mlp, nn.ReLU())
        self.top_l = _mlp(config.top_mlp_in_features, config.top_mlp, nn.Sigmoid())
        # The reference's interact_features: pairs (i, j), j < i, in row order.
        count = config.num_tables + 1
        self._pair_rows = [i for i in range(count) for _ in range(i)]
        self._pair_cols = [j for i in range(count) for j in range(i)]

    @classmethod
    def from_recjax(cls, model: DLRM) -> "TorchDLRM":
        """The PyTorch twin of `model`, holding a copy of its weights (loaded table by table)."""
        module = cls(model.config)
        with warnings.catch_warnings():
            # The exported tables are read-only views of the recjax buffer; torch only reads them
            # here, copying each into its own parameter, so no third copy of the tables is made.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            state_dict = {
                key: torch.from_numpy(value)
                for key, value in export_reference_state_dict(model).items()
            }
        module.load_state_dict(state_dict, strict=True)
        return module.eval()

    def dot_interaction(self, dense: torch.Tensor, pooled: list[torch.Tensor]) -> torch.Tensor:
        """[B, D] and T x [B, D] -> [B, D + (T + 1) T / 2], as the reference DLRM computes it."""
        batch, dim = dense.shape
        features = torch.cat([dense, *pooled], dim=1).view(batch, -1, dim)  # [B, T + 1, D]
        gram = torch.bmm(features, features.transpose(1, 2))  # [B, T + 1, T + 1]
        return torch.cat([dense, gram[:, self._pair_rows, self._pair_cols]], dim=1)

    def forward(self, dense: torch.Tensor, sparse_ids: list[torch.Tensor]) -> torch.Tensor:
        bottom = self.bot_l(dense)  # [B, H]
        pooled = [bag(ids) for bag, ids in zip(self.emb_l, sparse_ids, strict=True)]  # T x [B, D]
        if self.interaction == "cat":
            features = torch.cat([bottom, *pooled], dim=1)
        else:
            features = self.dot_interaction(bottom, pooled)
        return self.top_l(features)[:, 0]


class TorchBatch(NamedTuple):
    """A batch as torch tensors: dense [B, F] float32, T contiguous [B, L] int32 id tensors."""

    dense: torch.Tensor
    sparse_ids: tuple[torch.Tensor, ...]


class TorchPredictor:
    """A recjax model's weights in `TorchDLRM`, run eagerly under `torch.inference_mode()`.

    Example:
        >>> predictor = TorchPredictor(model)
        >>> inputs = predictor.prepare(batch)   # once, outside any timed region
        >>> predictor(inputs)                   # [B] click probabilities, a NumPy array
    """

    def __init__(self, model: DLRM):
        self.config: DLRMConfig = model.config
        self.module = TorchDLRM.from_recjax(model)

    def prepare(self, batch: Batch) -> TorchBatch:
        """The batch as torch tensors, ids split per table into [B, L] (one copy, [T, B, L])."""
        check_batch_shapes(self.config, batch)
        dense = torch.from_numpy(np.array(batch.dense))
        per_table = np.ascontiguousarray(np.asarray(batch.sparse_ids).transpose(1, 0, 2))
        return TorchBatch(dense, tuple(torch.from_numpy(per_table).unbind(0)))

    def __call__(self, inputs: TorchBatch) -> np.ndarray:
        """[B] click probabilities. Out-of-range ids raise torch's IndexError."""
        with torch.inference_mode():
            return self.module(inputs.dense, list(inputs.sparse_ids)).numpy()
