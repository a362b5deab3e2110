"""Model presets of every family, found by name (`--model=rmc2`, `configs.get("rmc2")`).

Each file holds one family's full-size presets: functions returning a frozen config, with the
source of their sizes and the command that benchmarks them in the file's docstring. Every full
preset also has a `-tiny` variant made by one rule (`tiny`): the same architecture with at most
1,000 rows per table, for tests and quick runs. `dataclasses.replace` derives other variants.
"""

import dataclasses

from configs import dcnv2, deepfm, dien, din, mtwnd, ncf, rmc1, rmc2, rmc3, wnd
from recjax.models.family import ModelConfig

TINY_ROWS = 1_000
TINY_SUFFIX = "-tiny"

_FULL_PRESETS = {
    **rmc1.PRESETS,
    **rmc2.PRESETS,
    **rmc3.PRESETS,
    **ncf.PRESETS,
    **wnd.PRESETS,
    **mtwnd.PRESETS,
    **deepfm.PRESETS,
    **dcnv2.PRESETS,
    **din.PRESETS,
    **dien.PRESETS,
}
# Full preset -> smaller runnable presets of the same architecture, declared by the preset files.
_SMALLER_VARIANTS = {**dcnv2.SMALLER_VARIANTS}


def tiny(config: ModelConfig) -> ModelConfig:
    """`config` with at most TINY_ROWS rows per table, named `<name>-tiny`."""
    return dataclasses.replace(
        config,
        name=config.name + TINY_SUFFIX,
        tables=tuple(
            dataclasses.replace(table, num_rows=min(table.num_rows, TINY_ROWS))
            for table in config.tables
        ),
    )


def names() -> list[str]:
    """Every preset name: the full presets and their -tiny variants."""
    return sorted([*_FULL_PRESETS, *(name + TINY_SUFFIX for name in _FULL_PRESETS)])


def get(name: str) -> ModelConfig:
    """The preset called `name`; raises ValueError listing the valid names if there is none."""
    if name in _FULL_PRESETS:
        return _FULL_PRESETS[name]()
    if name.endswith(TINY_SUFFIX) and name.removesuffix(TINY_SUFFIX) in _FULL_PRESETS:
        return tiny(_FULL_PRESETS[name.removesuffix(TINY_SUFFIX)]())
    raise ValueError(f"Unknown model preset {name!r}; expected one of {names()}.")


def full_size_of(name: str) -> str:
    """The full preset a name derives from ("rmc2-tiny" -> "rmc2")."""
    return name.removesuffix(TINY_SUFFIX)


def smaller_presets(name: str) -> list[str]:
    """What to suggest when preset `name` does not fit in memory: the smaller variants its preset
    file declares (e.g. "dcnv2" for "dcnv2-full"), then its -tiny variant; none for a -tiny."""
    full = full_size_of(name)
    candidates = [*_SMALLER_VARIANTS.get(full, ()), full + TINY_SUFFIX]
    return [candidate for candidate in candidates if candidate != name and candidate in names()]
