"""TorchRec's quantized inference DLRM, running a recjax model's weights: the production CPU peer.

The network is built the way TorchRec users build it: a `torchrec.EmbeddingBagCollection` (one
`EmbeddingBagConfig` per sparse feature, the feature's own table), `nn.Linear` + ReLU MLPs and the
same interaction as the eager twin (`recjax.interop.torch_dlrm`), then
`torchrec.inference.modules.quantize_inference_model` swaps the collection for a
`QuantEmbeddingBagCollection`: int8 row-wise tables in one FBGEMM table-batched embedding
(`IntNBitTableBatchedEmbeddingBagsCodegen`, rows of a float16 scale and bias then D codes, padded
to 16 bytes: 80 bytes for D = 64, 48 for D = 32). The MLPs stay float32.

Weights: the tables are loaded from the recjax model read as float32 (float32 tables as they are;
quantized or half-precision tables decoded), one table at a time, into the float collection,
which TorchRec then quantizes with FBGEMM's own quantizer (min-max per row, float16 scale and
bias); bfloat16 MLP kernels are widened. So a recjax int8 model and this twin hold two row-wise
int8 quantizations of the same values, each within half a step of them:
docs/design/quantized-tables.md gives the tolerance the tests hold them to.

Inputs are a `KeyedJaggedTensor` (values and lengths per feature), made once by `prepare`.
It runs what the eager twin runs (`torch_dlrm.check_supported`): fixed-length, unweighted sum bags,
each over a table of its own, and the "cat" or "dot" interaction.
"""

import gc
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
from recjax.interop.reference_dlrm import (
    export_mlp_state_dict,
    reference_table,
    reference_tables,
)
from recjax.interop.torch_dlrm import check_supported
from recjax.interop.torchrec_twins import require_torchrec
from recjax.models.dlrm import DLRM, DLRMConfig

torchrec = require_torchrec()
import torch  # noqa: E402  (after the check that says how to install it)
from torchrec.inference.modules import quantize_inference_model  # noqa: E402

nn = torch.nn


def _mlp(in_features: int, layer_sizes: tuple[int, ...], last_activation: nn.Module):
    """nn.Sequential(Linear, ReLU, ..., Linear, last_activation), the reference DLRM's MLP."""
    widths = (in_features, *layer_sizes)
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(width_in, width_out))
        layers.append(last_activation if index == len(layer_sizes) - 1 else nn.ReLU())
    return nn.Sequential(*layers)


class TorchRecDLRM(nn.Module):
    """The DLRM network of TorchRec modules, with the reference DLRM's MLP names.

    Inputs  dense [B, F] float32, and a KeyedJaggedTensor of the K sparse features (keys in
            feature order; each bag C_k ids).
    Output  click probabilities [B] float32.

    The collection is created on the meta device (nothing allocated); `from_recjax` allocates it,
    loads the tables and quantizes the module.
    """

    def __init__(self, config: DLRMConfig):
        check_supported(config)
        super().__init__()
        self.interaction = config.interaction
        self.feature_names = [feature.name for feature in config.features]
        self.sparse_arch = torchrec.EmbeddingBagCollection(
            tables=[
                torchrec.EmbeddingBagConfig(
                    name=table.name,
                    embedding_dim=table.dim,
                    num_embeddings=table.num_rows,
                    feature_names=[feature.name],
                )
                for table, feature in zip(reference_tables(config), config.features, strict=True)
            ],
            device=torch.device("meta"),
        )
        self.bot_l = _mlp(config.dense_features, config.bottom_mlp, nn.ReLU())
        self.top_l = _mlp(config.top_mlp_in_features, config.top_mlp, nn.Sigmoid())
        count = config.num_features + 1
        self._pair_rows = [i for i in range(count) for _ in range(i)]
        self._pair_cols = [j for i in range(count) for j in range(i)]

    @classmethod
    def from_recjax(cls, model: DLRM) -> "TorchRecDLRM":
        """The quantized TorchRec twin of `model` (int8 tables, float32 MLPs).

        Tables are copied one at a time into the float collection, which is then quantized and
        dropped: the peak is the float32 tables beside their int8 copy.
        """
        module = cls(model.config)
        module.sparse_arch.to_empty(device="cpu")
        with torch.no_grad(), warnings.catch_warnings():
            # A float32 table is a read-only view of the recjax buffer; torch only reads it here.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            for index, table in enumerate(reference_tables(model.config)):
                weight = module.sparse_arch.embedding_bags[table.name].weight
                weight.copy_(torch.from_numpy(reference_table(model, index)))
        mlp_weights = export_mlp_state_dict(model)
        for prefix in ("bot_l", "top_l"):
            getattr(module, prefix).load_state_dict(
                {
                    key.removeprefix(f"{prefix}."): torch.from_numpy(value)
                    for key, value in mlp_weights.items()
                    if key.startswith(f"{prefix}.")
                },
                strict=True,
            )
        module = quantize_inference_model(module.eval())
        gc.collect()  # the float collection
        return module

    def dot_interaction(self, dense: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """[B, D] and [B, K D] -> [B, D + (K + 1) K / 2], as the reference DLRM computes it."""
        batch, dim = dense.shape
        features = torch.cat([dense, pooled], dim=1).view(batch, -1, dim)  # [B, K + 1, D]
        gram = torch.bmm(features, features.transpose(1, 2))
        return torch.cat([dense, gram[:, self._pair_rows, self._pair_cols]], dim=1)

    def forward(self, dense: torch.Tensor, sparse) -> torch.Tensor:
        bottom = self.bot_l(dense)  # [B, H]
        pooled = self.sparse_arch(sparse).values()  # [B, K D], features in config order
        if self.interaction == "cat":
            features = torch.cat([bottom, pooled], dim=1)
        else:
            features = self.dot_interaction(bottom, pooled)
        return self.top_l(features)[:, 0]


class TorchRecBatch(NamedTuple):
    """A batch as TorchRec inputs: dense [B, F] float32 and a KeyedJaggedTensor."""

    dense: torch.Tensor
    sparse: object  # torchrec.KeyedJaggedTensor


class TorchRecPredictor:
    """A recjax DLRM's weights in `TorchRecDLRM`, quantized to int8, run under inference mode.

    Takes a `Features` batch as `recjax.runtime.inference.CompiledPredictor` does and returns
    {"click": [B] probabilities} as NumPy; rejects the batches it rejects (`InvalidInputError`).

    Example:
        >>> predictor = TorchRecPredictor(model)   # ValueError first if it cannot run the model
        >>> inputs = predictor.prepare(batch)      # once, outside any timed region
        >>> predictor(inputs)["click"]             # [B] click probabilities, a NumPy array
    """

    def __init__(self, model: DLRM):
        self.config: DLRMConfig = model.config
        (self.head,) = self.config.heads
        self.module = TorchRecDLRM.from_recjax(model)

    def prepare(self, batch: Features) -> TorchRecBatch:
        """The batch as TorchRec inputs: ids feature by feature (KeyedJaggedTensor values are
        grouped by key), every bag holding its capacity.

        Raises:
          ValueError: the batch's layout, shapes or dtypes are not the model's.
          InvalidInputError: an id is outside its table, a length is not the feature's capacity,
            or a dense value is not finite (the message names the first).
        """
        check_batch_shapes(self.config, batch)
        if not bool(inputs_valid(self.config, batch)):
            problem = describe_invalid_inputs(self.config, batch)
            raise InvalidInputError(f"{self.config.name}: {problem}")
        ids = np.asarray(batch.ids)
        values = np.concatenate(
            [
                ids[:, column : column + capacity].reshape(-1)
                for column, capacity in zip(
                    batch.layout.columns, batch.layout.capacities, strict=True
                )
            ]
        )
        lengths = np.repeat(np.asarray(batch.layout.capacities, np.int32), batch.batch_size)
        sparse = torchrec.KeyedJaggedTensor(
            keys=list(batch.layout.names),
            values=torch.from_numpy(np.ascontiguousarray(values, np.int32)),
            lengths=torch.from_numpy(lengths),
        )
        return TorchRecBatch(torch.from_numpy(np.array(batch.dense)), sparse)

    def __call__(self, batch: Features | TorchRecBatch) -> dict[str, np.ndarray]:
        """{"click": [B] float32 probabilities} of a `Features` batch (checked and converted by
        `prepare`) or of a prepared `TorchRecBatch` (run as it is)."""
        inputs = batch if isinstance(batch, TorchRecBatch) else self.prepare(batch)
        with torch.inference_mode():
            probabilities = self.module(inputs.dense, inputs.sparse)
        return {self.head: probabilities.numpy()}
