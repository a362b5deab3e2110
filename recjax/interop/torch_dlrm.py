"""An eager PyTorch DLRM built the way PyTorch users build it, running a recjax model's weights.

One `nn.EmbeddingBag(rows, D, mode="sum")` per sparse feature, `nn.Linear` + ReLU MLPs in
`nn.Sequential`s, the same interaction ("cat" or "dot") and a sigmoid: the module layout of the
reference DLRM (facebookresearch/dlrm, `DLRM_Net`), so its state dict has the reference's keys and
the recjax weights arrive through `recjax.interop.reference_dlrm.export_reference_state_dict` and
`load_state_dict`. Inference runs under `torch.inference_mode()`. This is the "dlrm" family's twin
in `recjax.interop.torch_twins`.

The twin runs what the reference DLRM runs: every sparse feature a fixed-length, unweighted sum bag
over a table of its own (`check_supported`); other configs are refused before anything is copied.

Shapes: `B` batch, `F` dense features, `K` sparse features, `C_k` ids per bag of feature k, `D`
embedding dim.

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
from recjax.interop.reference_dlrm import export_reference_state_dict, reference_tables
from recjax.interop.torch_twins import require_torch
from recjax.interop.torch_twins import set_torch_threads as set_torch_threads
from recjax.interop.torch_twins import usable_cores as usable_cores
from recjax.models.dlrm import DLRM, DLRMConfig

torch = require_torch()
nn = torch.nn

INTERACTIONS = ("cat", "dot")


def check_supported(config: DLRMConfig) -> None:
    """Raises ValueError unless the twin can run `config`.

    It runs what the reference DLRM runs: each sparse feature a fixed-length (`fixed_length=True`),
    unweighted (`weighted=False`) sum bag (`pooling="sum"`) over a table of its own, and the "cat"
    or "dot" interaction. The message names every feature it cannot represent and why.
    """
    reference_tables(config)  # one table per feature
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
            f"{config.name}: the PyTorch DLRM runs fixed-length, unweighted sum bags "
            f"(pooling='sum', weighted=False, fixed_length=True); it cannot represent the "
            f"feature(s) {', '.join(problems)}."
        )
    if config.interaction not in INTERACTIONS:
        raise ValueError(
            f"{config.name}: the PyTorch DLRM has no {config.interaction!r} interaction; it "
            f"runs {list(INTERACTIONS)}."
        )


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

    Inputs  dense [B, F] float32, and K tensors [B, C_k] of ids, in feature order (the 2-D input
            form of nn.EmbeddingBag: each row one bag of C_k ids).
    Output  click probabilities [B] float32.

    The embedding tables are allocated uninitialized (`torch.nn.utils.skip_init`: rmc1 and rmc2
    hold 4.1 GB of tables): load a state dict before use, e.g. with `from_recjax`.

    Example:
        >>> module = TorchDLRM.from_recjax(model)
        >>> with torch.inference_mode():
        ...     module(dense, [ids_0, ids_1, ...]).shape
        torch.Size([B])
    """

    def __init__(self, config: DLRMConfig, sparse_gradients: bool = False):
        check_supported(config)
        super().__init__()
        self.interaction = config.interaction
        # sparse=True: the tables' gradients are sparse (only the looked-up rows), for training.
        self.emb_l = nn.ModuleList(
            torch.nn.utils.skip_init(
                nn.EmbeddingBag, table.num_rows, table.dim, mode="sum", sparse=sparse_gradients
            )
            for table in reference_tables(config)
        )
        self.bot_l = _mlp(config.dense_features, config.bottom_mlp, nn.ReLU())
        self.top_l = _mlp(config.top_mlp_in_features, config.top_mlp, nn.Sigmoid())
        # The reference's interact_features: pairs (i, j), j < i, in row order.
        count = config.num_features + 1
        self._pair_rows = [i for i in range(count) for _ in range(i)]
        self._pair_cols = [j for i in range(count) for j in range(i)]

    @classmethod
    def from_recjax(cls, model: DLRM, sparse_gradients: bool = False) -> "TorchDLRM":
        """The PyTorch twin of `model`, holding a copy of its weights (loaded table by table).

        Raises ValueError (`check_supported`) before reading any weight.
        """
        module = cls(model.config, sparse_gradients=sparse_gradients)
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
        """[B, D] and K x [B, D] -> [B, D + (K + 1) K / 2], as the reference DLRM computes it."""
        batch, dim = dense.shape
        features = torch.cat([dense, *pooled], dim=1).view(batch, -1, dim)  # [B, K + 1, D]
        gram = torch.bmm(features, features.transpose(1, 2))  # [B, K + 1, K + 1]
        return torch.cat([dense, gram[:, self._pair_rows, self._pair_cols]], dim=1)

    def _interaction(self, dense: torch.Tensor, sparse_ids: list[torch.Tensor]) -> torch.Tensor:
        bottom = self.bot_l(dense)  # [B, H]
        pooled = [bag(ids) for bag, ids in zip(self.emb_l, sparse_ids, strict=True)]  # K x [B, D]
        if self.interaction == "cat":
            return torch.cat([bottom, *pooled], dim=1)
        return self.dot_interaction(bottom, pooled)

    def forward(self, dense: torch.Tensor, sparse_ids: list[torch.Tensor]) -> torch.Tensor:
        return self.top_l(self._interaction(dense, sparse_ids))[:, 0]

    def logits(self, dense: torch.Tensor, sparse_ids: list[torch.Tensor]) -> torch.Tensor:
        """[B] click logits: the forward pass without the final sigmoid (for training)."""
        return self.top_l[:-1](self._interaction(dense, sparse_ids))[:, 0]


class TorchBatch(NamedTuple):
    """A batch as torch tensors: dense [B, F] float32, K contiguous [B, C_k] int32 id tensors."""

    dense: torch.Tensor
    sparse_ids: tuple[torch.Tensor, ...]


class TorchPredictor:
    """A recjax DLRM's weights in `TorchDLRM`, run eagerly under `torch.inference_mode()`.

    Takes a `Features` batch, as `recjax.runtime.inference.CompiledPredictor` does, and returns
    {"click": [B] probabilities} as NumPy; rejects the batches it rejects (`InvalidInputError`).

    Example:
        >>> predictor = TorchPredictor(model)   # ValueError first if the twin cannot run it
        >>> predictor(batch)["click"]           # [B] click probabilities, a NumPy array
        >>> inputs = predictor.prepare(batch)   # once, outside any timed region
        >>> predictor(inputs)["click"]          # the same, with no conversion or check
    """

    def __init__(self, model: DLRM):
        self.config: DLRMConfig = model.config
        (self.head,) = self.config.heads
        self.module = TorchDLRM.from_recjax(model)

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
        """{"click": [B] float32 probabilities} of a `Features` batch (checked and converted by
        `prepare`) or of a prepared `TorchBatch` (run as it is)."""
        inputs = batch if isinstance(batch, TorchBatch) else self.prepare(batch)
        with torch.inference_mode():
            probabilities = self.module(inputs.dense, list(inputs.sparse_ids))
        return {self.head: probabilities.numpy()}


# Table optimizers: the sparse-gradient optimizers PyTorch users train DLRM tables with. torch has
# no row-wise Adagrad outside FBGEMM; its element-wise Adagrad (sparse gradients supported) is the
# nearest.
TABLE_OPTIMIZERS = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "rowwise_adagrad": lambda params, lr: torch.optim.Adagrad(params, lr=lr, eps=1e-8),
}
# Dense optimizers, with optax's defaults where torch's differ.
DENSE_OPTIMIZERS = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr, eps=1e-8),
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, eps=1e-8, weight_decay=1e-4),
    "adagrad": lambda params, lr: torch.optim.Adagrad(
        params, lr=lr, initial_accumulator_value=0.1, eps=1e-7
    ),
}


class TorchTrainer:
    """Trains the twin the way PyTorch users train DLRM, from a recjax model's weights.

    `nn.EmbeddingBag(sparse=True)` tables updated by a sparse-gradient optimizer (SGD, or
    element-wise Adagrad for recjax's "rowwise_adagrad"), `torch.optim` for the MLPs, and the
    mean binary cross-entropy of the logits (`BCEWithLogits`). Learning rates follow the given
    schedules (step -> rate), set before each step.

    Example:
        >>> trainer = TorchTrainer(model, embedding_optimizer="sgd", embedding_learning_rate=0.1,
        ...                        optimizer="sgd", learning_rate=0.1)
        >>> loss = trainer.step(trainer.prepare(batch))   # a float
    """

    def __init__(
        self,
        model: DLRM,
        *,
        embedding_optimizer: str,
        embedding_learning_rate,
        optimizer: str,
        learning_rate,
    ):
        for kind, name, accepted in (
            ("table", embedding_optimizer, TABLE_OPTIMIZERS),
            ("dense", optimizer, DENSE_OPTIMIZERS),
        ):
            if name not in accepted:
                raise ValueError(
                    f"The PyTorch DLRM has no {kind} optimizer {name!r}; it trains with "
                    f"{sorted(accepted)}."
                )
        self.config: DLRMConfig = model.config
        (self.head,) = self.config.heads
        self.module = TorchDLRM.from_recjax(model, sparse_gradients=True).train()
        self._rates = {"tables": embedding_learning_rate, "dense": learning_rate}
        dense = [p for name, p in self.module.named_parameters() if not name.startswith("emb_l")]
        self.optimizers = {
            "tables": TABLE_OPTIMIZERS[embedding_optimizer](
                list(self.module.emb_l.parameters()), self._rate("tables", 0)
            ),
            "dense": DENSE_OPTIMIZERS[optimizer](dense, self._rate("dense", 0)),
        }
        self.steps = 0

    def _rate(self, kind: str, step: int) -> float:
        rate = self._rates[kind]
        return float(rate(step)) if callable(rate) else float(rate)

    def prepare(self, batch: Features) -> tuple[TorchBatch, torch.Tensor]:
        """The batch as torch tensors (shapes checked; ids are trusted, as in training), and its
        labels [B]."""
        check_batch_shapes(self.config, batch)
        ids = np.asarray(batch.ids)
        sparse_ids = tuple(
            torch.from_numpy(np.ascontiguousarray(ids[:, column : column + capacity]))
            for column, capacity in zip(batch.layout.columns, batch.layout.capacities, strict=True)
        )
        labels = torch.from_numpy(np.asarray(batch.labels[self.head], np.float32))
        return TorchBatch(torch.from_numpy(np.asarray(batch.dense)), sparse_ids), labels

    def step(self, prepared: tuple[TorchBatch, torch.Tensor]) -> float:
        """One step on a prepared batch; returns the loss before the update."""
        inputs, labels = prepared
        for kind, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self._rate(kind, self.steps)
            optimizer.zero_grad(set_to_none=True)
        logits = self.module.logits(inputs.dense, list(inputs.sparse_ids))
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
        loss.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
        self.steps += 1
        return float(loss.detach())
