"""Each model family's eager PyTorch twin, found by family name; torch itself is optional.

A twin is a module under `recjax.interop` that builds the family's network the way PyTorch users
build it and runs a recjax model's weights in it. It defines `TorchPredictor(model)`, a predictor
with the interface of `recjax.runtime.inference.CompiledPredictor`:

    predictor = torch_predictor(model)     # copies the weights into the twin
    predictor(batch)                       # {head: [B] probabilities}, NumPy, for a Features batch
    inputs = predictor.prepare(batch)      # the batch as torch tensors, checked: once, untimed
    predictor(inputs)                      # the same, with no conversion or check (for timing)

The twin raises ValueError, naming what it cannot represent, before copying anything. Twins are
named here as module paths and imported only when asked for, so this module imports neither torch
nor any family's model; `require_torch` fails early, with the install command, where torch is
missing.

Example:
    >>> if has_torch_twin(model.config):
    ...     set_torch_threads(usable_cores())
    ...     probabilities = torch_predictor(model)(batch)["click"]
"""

import importlib
import os
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from flax import nnx

from recjax.inputs.features import Features
from recjax.models.family import ModelConfig
from recjax.models.registry import family_of

INSTALL_HINT = "pip install -e '.[torch]' (torch 2.13.0, CPU)"

# Family name (`recjax.models.registry.FAMILIES`) -> the module of its twin, which defines
# `TorchPredictor(model)`.
TWINS: dict[str, str] = {
    "dlrm": "recjax.interop.torch_dlrm",
    "ncf": "recjax.interop.torch_ncf",
    "wide_deep": "recjax.interop.torch_wide_deep",
    "multitask_wide_deep": "recjax.interop.torch_multitask_wide_deep",
    "deepfm": "recjax.interop.torch_deepfm",
    "dcnv2": "recjax.interop.torch_dcnv2",
    "din": "recjax.interop.torch_din",
    "dien": "recjax.interop.torch_dien",
}


class TorchTwinPredictor(Protocol):
    """What every twin's `TorchPredictor(model)` provides."""

    config: ModelConfig

    def prepare(self, batch: Features) -> Any:
        """The batch as the twin's torch inputs, checked like the compiled predictor checks it."""

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        """{head: [B] probabilities} for a `Features` batch or the result of `prepare`."""


def require_torch() -> ModuleType:
    """The torch module; raises ImportError saying how to install it when it cannot be imported."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"The PyTorch baseline needs torch, which cannot be imported ({error}). Install it "
            f"with {INSTALL_HINT}."
        ) from error
    return torch


def has_torch_twin(config: ModelConfig) -> bool:
    """Whether `config`'s family has a PyTorch twin (whether or not torch is installed).

    Raises ValueError if `config`'s class is not a registered family.
    """
    return family_of(config) in TWINS


def torch_predictor(model: nnx.Module) -> TorchTwinPredictor:
    """The PyTorch twin of `model`, holding a copy of its weights (see the module docstring).

    Raises:
      ValueError: the model's family has no twin (the message names the families that have one),
        its config class is not a registered family, or the twin cannot represent its config.
      ImportError: torch is not installed (the message gives the install command).
    """
    family = family_of(model.config)
    if family not in TWINS:
        raise ValueError(
            f"{model.config.name}: the model family {family!r} has no PyTorch twin; families "
            f"with one: {sorted(TWINS)}."
        )
    require_torch()
    return importlib.import_module(TWINS[family]).TorchPredictor(model)


def torch_trainer(model: nnx.Module, **settings: Any) -> Any:
    """The family twin's `TorchTrainer(model, **settings)`: the twin trained the way PyTorch
    users train it, from a copy of `model`'s weights (`prepare(batch)`, `step(prepared) -> loss`).

    Raises ValueError if the family has no twin, or its twin does not train.
    """
    family = family_of(model.config)
    if family not in TWINS:
        raise ValueError(
            f"{model.config.name}: the model family {family!r} has no PyTorch twin; families "
            f"with one: {sorted(TWINS)}."
        )
    require_torch()
    module = importlib.import_module(TWINS[family])
    if not hasattr(module, "TorchTrainer"):
        raise ValueError(f"The PyTorch twin of the {family!r} family does not train yet.")
    return module.TorchTrainer(model, **settings)


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

    Raises:
      ValueError: `num_threads` is not positive.
      ImportError: torch is not installed (the message gives the install command).
    """
    if num_threads <= 0:
        raise ValueError(f"num_threads must be positive; got {num_threads}.")
    torch = require_torch()
    torch.set_num_threads(num_threads)
    if torch.get_num_interop_threads() != num_threads:
        torch.set_num_interop_threads(num_threads)
    return {
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
    }
