"""Model presets, selected by name (`--model=rmc2`).

Each preset is a function returning a frozen `DLRMConfig`; `dataclasses.replace` derives variants.
"""

from configs import rmc1, rmc2, rmc3
from recjax.models.dlrm import DLRMConfig

_PRESETS = {**rmc1.PRESETS, **rmc2.PRESETS, **rmc3.PRESETS}


def names() -> list[str]:
    """The registered preset names."""
    return sorted(_PRESETS)


def get(name: str) -> DLRMConfig:
    """The preset called `name`; raises ValueError listing the valid names if there is none."""
    if name not in _PRESETS:
        raise ValueError(f"Unknown model preset {name!r}; expected one of {names()}.")
    return _PRESETS[name]()
