"""An eager PyTorch multi-task Wide & Deep (shared bottom or MMoE) built the way PyTorch users
build it, running a recjax model's weights.

The inputs are Wide & Deep's (`recjax.interop.torch_wide_deep`: `nn.EmbeddingBag`s per table in
`nn.ModuleDict`s, the same input checks); then an `nn.Sequential` shared bottom, or an
`nn.ModuleList` of expert `nn.Sequential`s and an `nn.ModuleDict` of gates (`nn.Linear` without
bias, softmax) mixed with `torch.einsum`, as the common PyTorch MMoE ports write it; one
`nn.Sequential` tower per task in an `nn.ModuleDict`; a sigmoid per task over the tower's logit
plus the summed wide weights. The weights arrive through `load_state_dict`; inference runs under
`torch.inference_mode()`. This is the "multitask_wide_deep" family's twin in
`recjax.interop.torch_twins`.

Shapes: `B` batch, `F` dense features, `K` sparse features, `C_k` ids per bag of feature k, `E`
experts, `H` the shared bottom's (or each expert's) output width.

torch is an optional extra; importing this module without it raises an ImportError saying how to
install it.
"""

import numpy as np

from recjax.inputs.features import Features
from recjax.interop import torch_wide_deep
from recjax.interop.torch_twins import require_torch
from recjax.interop.torch_wide_deep import (
    TorchBatch,
    embedding_bags,
    load,
    mlp,
    prepare,
    sparse_state,
)
from recjax.interop.twin_weights import linear_state, sequential_state
from recjax.models.multitask_wide_deep import MultiTaskWideDeep, MultiTaskWideDeepConfig

torch = require_torch()
nn = torch.nn


def check_supported(config: MultiTaskWideDeepConfig) -> None:
    """Raises ValueError unless the twin can run `config`: Wide & Deep's inputs
    (`torch_wide_deep.check_supported`), and task names that are valid nn.ModuleDict keys."""
    torch_wide_deep.check_supported(config)
    bad = [task for task in config.heads if hasattr(nn.ModuleDict, task)]
    if bad:
        raise ValueError(
            f"{config.name}: the PyTorch twin keeps one tower per task in an nn.ModuleDict; the "
            f"task names {bad} are attributes of nn.ModuleDict, which it cannot take as keys."
        )


class TorchMultiTaskWideDeep(nn.Module):
    """Multi-task Wide & Deep in eager PyTorch.

    Inputs  dense [B, F] float32, and K tensors [B, C_k] of ids, in feature order.
    Output  {task: probabilities [B] float32}, in head order.

    Example:
        >>> module = TorchMultiTaskWideDeep.from_recjax(model)
        >>> with torch.inference_mode():
        ...     module(dense, [ids_0, ids_1, ...])["task_0"].shape
        torch.Size([B])
    """

    def __init__(self, config: MultiTaskWideDeepConfig):
        check_supported(config)
        super().__init__()
        self.tasks = list(config.heads)
        self.mmoe = config.experts > 0
        self.feature_tables = [feature.table for feature in config.features]
        self.wide_tables = list(config.wide_tables)
        self.embeddings = embedding_bags(config, self.feature_tables)
        self.wide = embedding_bags(config, self.wide_tables)
        width_in = config.deep_in_features
        if config.experts:
            self.experts = nn.ModuleList(
                mlp(width_in, config.shared_mlp, relu_last=True) for _ in range(config.experts)
            )
            self.gates = nn.ModuleDict(
                {task: nn.Linear(width_in, config.experts, bias=False) for task in self.tasks}
            )
        else:
            self.shared_bottom = mlp(width_in, config.shared_mlp, relu_last=True)
        self.towers = nn.ModuleDict(
            {
                task: mlp(config.shared_mlp[-1], config.task_mlp, relu_last=False)
                for task in self.tasks
            }
        )

    @classmethod
    def from_recjax(cls, model: MultiTaskWideDeep) -> "TorchMultiTaskWideDeep":
        """The twin of `model`, holding a copy of its weights; ValueError first if it cannot run
        the config (`check_supported`)."""
        config = model.config
        module = cls(config)
        state = sparse_state(model)
        if config.experts:
            for index, expert in enumerate(model.experts):
                state.update(sequential_state(f"experts.{index}", expert))
            for task in config.heads:
                state.update(linear_state(f"gates.{task}", model.gates[task]))
        else:
            state.update(sequential_state("shared_bottom", model.shared_bottom))
        for task in config.heads:
            state.update(sequential_state(f"towers.{task}", model.towers[task]))
        return load(module, state)

    def forward(
        self, dense: torch.Tensor, sparse_ids: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        embedded = [
            self.embeddings[table](ids)
            for table, ids in zip(self.feature_tables, sparse_ids, strict=True)
        ]  # K x [B, D]
        x = torch.cat([dense, *embedded], dim=1)  # [B, F + sum_k D_k]
        if self.mmoe:
            experts = torch.stack([expert(x) for expert in self.experts], dim=1)  # [B, E, H]
            tower_inputs = {
                task: torch.einsum("be,beh->bh", torch.softmax(self.gates[task](x), dim=1), experts)
                for task in self.tasks
            }
        else:
            shared = self.shared_bottom(x)  # [B, H]
            tower_inputs = {task: shared for task in self.tasks}
        wide = 0.0
        if self.wide_tables:
            wide = torch.cat(
                [
                    self.wide[table](ids)
                    for table, ids in zip(self.wide_tables, sparse_ids, strict=True)
                ],
                dim=1,
            ).sum(dim=1)  # [B]
        return {
            task: torch.sigmoid(self.towers[task](tower_inputs[task]).squeeze(1) + wide)
            for task in self.tasks
        }


class TorchPredictor:
    """A recjax multi-task Wide & Deep's weights in `TorchMultiTaskWideDeep`, run eagerly under
    `torch.inference_mode()`.

    Takes a `Features` batch, as `recjax.runtime.inference.CompiledPredictor` does, and returns
    {task: [B] probabilities} as NumPy; rejects the batches it rejects (`InvalidInputError`).

    Example:
        >>> predictor = TorchPredictor(model)   # ValueError first if the twin cannot run it
        >>> inputs = predictor.prepare(batch)   # once, outside any timed region
        >>> predictor(inputs)["task_0"]         # [B] probabilities, with no conversion or check
    """

    def __init__(self, model: MultiTaskWideDeep):
        self.config: MultiTaskWideDeepConfig = model.config
        self.module = TorchMultiTaskWideDeep.from_recjax(model)

    def prepare(self, batch: Features) -> TorchBatch:
        return prepare(self.config, batch)

    def __call__(self, batch: Features | TorchBatch) -> dict[str, np.ndarray]:
        """{task: [B] float32 probabilities} of a `Features` batch (checked and converted by
        `prepare`) or of a prepared `TorchBatch` (run as it is)."""
        inputs = batch if isinstance(batch, TorchBatch) else self.prepare(batch)
        with torch.inference_mode():
            probabilities = self.module(inputs.dense, list(inputs.sparse_ids))
        return {task: value.numpy() for task, value in probabilities.items()}
