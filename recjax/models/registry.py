"""The model families, by name: every config class that follows the family contract."""

from recjax.models.dcnv2 import DCNv2Config
from recjax.models.deepfm import DeepFMConfig
from recjax.models.dien import DIENConfig
from recjax.models.din import DINConfig
from recjax.models.dlrm import DLRMConfig
from recjax.models.family import ModelConfig
from recjax.models.multitask_wide_deep import MultiTaskWideDeepConfig
from recjax.models.ncf import NCFConfig
from recjax.models.wide_deep import WideDeepConfig

FAMILIES: dict[str, type[ModelConfig]] = {
    "dlrm": DLRMConfig,
    "ncf": NCFConfig,
    "wide_deep": WideDeepConfig,
    "multitask_wide_deep": MultiTaskWideDeepConfig,
    "deepfm": DeepFMConfig,
    "dcnv2": DCNv2Config,
    "din": DINConfig,
    "dien": DIENConfig,
}


def family_of(config: ModelConfig) -> str:
    """The registered name of `config`'s family; raises ValueError for an unregistered class."""
    for name, config_class in FAMILIES.items():
        if type(config) is config_class:
            return name
    raise ValueError(
        f"{type(config).__name__} is not a registered model family; registered: {sorted(FAMILIES)}."
    )
