"""Each model family's TorchRec quantized-inference twin (the production CPU peer), found by name.

A TorchRec twin builds the family's network from TorchRec modules, loads a recjax model's weights
(every table read as float32), and quantizes it with TorchRec's
`torchrec.inference.modules.quantize_inference_model`: int8 row-wise tables in FBGEMM's
table-batched embedding (`IntNBitTableBatchedEmbeddingBagsCodegen`), float32 MLPs. It defines
`TorchRecPredictor(model)`, with the interface of `recjax.interop.torch_twins.TorchTwinPredictor`
(`prepare(batch)` once, untimed; `predictor(prepared)` -> {head: [B] probabilities}).

torchrec is an optional extra that pip cannot resolve on its own for a CPU machine (its metadata
asks for the CUDA build of fbgemm); `INSTALL_HINT` is the command that installs it. Nothing here
imports torch or torchrec until a twin is asked for.
"""

import importlib
from types import ModuleType

from flax import nnx

from recjax.interop.torch_twins import TorchTwinPredictor
from recjax.models.family import ModelConfig
from recjax.models.registry import family_of

# fbgemm-gpu-cpu 1.9.0 runs its int8 CPU lookup through a slow scalar fallback (15 ms instead of
# about 0.25 ms for 32 tables at batch 16 on the 2-core machine of DESIGN.md): pin 1.8.0.
# The pins of pyproject.toml's torchrec extra, installed without torchrec's CUDA requirements.
INSTALL_HINT = (
    "pip install torch==2.13.0 && "
    "pip install --no-deps fbgemm-gpu-cpu==1.8.0 torchrec==1.8.0 tensordict==0.15.3 "
    "pyvers==0.2.3 cloudpickle==3.1.3 pyre-extensions==0.0.32 typing-inspect==0.9.0 "
    "mypy-extensions==1.2.0"
)

# What TorchRec's quantized CPU inference runs on which threads (fbgemm-gpu-cpu 1.8.0 with torch
# 2.13.0), reported beside its numbers.
THREAD_NOTE = (
    "TorchRec int8 embedding lookups: FBGEMM's CPU table-batched kernel, single-threaded in these "
    "wheels; its MLPs: torch's intra-op threads"
)

# Family name (`recjax.models.registry.FAMILIES`) -> the module of its twin, which defines
# `TorchRecPredictor(model)`.
TORCHREC_TWINS: dict[str, str] = {
    "dlrm": "recjax.interop.torchrec_dlrm",
}


def require_torchrec() -> ModuleType:
    """The torchrec module; raises ImportError with the install command when it cannot be
    imported (or one of the packages it needs cannot)."""
    try:
        import torchrec
        import torchrec.inference.modules  # noqa: F401  (needs fbgemm_gpu's CPU operators)
    except ImportError as error:
        raise ImportError(
            f"TorchRec's quantized inference needs torch, fbgemm-gpu-cpu and torchrec, which "
            f"cannot be imported ({error}). Install them with: {INSTALL_HINT}"
        ) from error
    return torchrec


def has_torchrec_twin(config: ModelConfig) -> bool:
    """Whether `config`'s family has a TorchRec twin (whether or not torchrec is installed)."""
    return family_of(config) in TORCHREC_TWINS


def fbgemm_version() -> str:
    """The installed fbgemm-gpu-cpu version (or "unknown")."""
    from importlib import metadata

    try:
        return metadata.version("fbgemm-gpu-cpu")
    except metadata.PackageNotFoundError:
        return "unknown"


def torchrec_predictor(model: nnx.Module) -> TorchTwinPredictor:
    """TorchRec's int8 quantized-inference twin of `model`, holding its own copy of the weights.

    Raises:
      ValueError: the model's family has no TorchRec twin, or the twin cannot represent its
        config (the message says what).
      ImportError: torchrec is not installed (the message gives the install command).
    """
    family = family_of(model.config)
    if family not in TORCHREC_TWINS:
        raise ValueError(
            f"{model.config.name}: the model family {family!r} has no TorchRec twin; families "
            f"with one: {sorted(TORCHREC_TWINS)}."
        )
    require_torchrec()
    return importlib.import_module(TORCHREC_TWINS[family]).TorchRecPredictor(model)
