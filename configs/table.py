"""Rows of the README's presets table, computed from each preset's own cost (`config.cost()`).

Builds nothing: the parameter bytes come from the abstract model (`jax.eval_shape`), so the full
presets (dcnv2-full's 104 GB too) print in seconds.

    python -m configs.table deepfm dcnv2 dcnv2-full deepfm-tiny dcnv2-tiny dcnv2-full-tiny

Columns: preset | family | architecture (`config.architecture_summary()`) | tables x rows x dim
(grouped by dim) | ids/feature | parameters | FC FLOPs (per sample, a multiply-add counts as
two) | embedding bytes gathered (per sample).
"""

import sys

import configs
from recjax.models.family import ModelConfig
from recjax.models.registry import family_of


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


def _bytes(count: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count:.0f} B"


def tables_cell(config: ModelConfig) -> str:
    """e.g. "26 x 3 to 10,131,227 x 16 + 26 x 3 to 10,131,227 x 1": tables grouped by dim."""
    dims = list(dict.fromkeys(table.dim for table in config.tables))
    parts = []
    for dim in dims:
        rows = [table.num_rows for table in config.tables if table.dim == dim]
        parts.append(f"{len(rows)} x {_span(rows)} x {dim}")
    return " + ".join(parts)


def row(name: str) -> str:
    """One markdown row of the presets table for preset `name`."""
    config = configs.get(name)
    cost = config.cost()
    capacities = [feature.capacity for feature in config.features]
    ids = _span(capacities)
    if len(set(capacities)) > 1:
        ids += f" ({sum(capacities)} in all)"
    cells = [
        name,
        family_of(config),
        config.architecture_summary(),
        tables_cell(config),
        ids,
        _bytes(cost["parameter_bytes"]),
        f"{cost['dense_flops_per_sample'] / 1e6:.2f} M",
        _bytes(cost["embedding_bytes_per_sample"]),
    ]
    return "| " + " | ".join(cells) + " |"


def main(names: list[str]) -> None:
    print(
        "| preset | family | architecture | tables x rows x dim | ids/feature | parameters | "
        "FC FLOPs | embedding bytes gathered |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names or configs.names():
        print(row(name))


if __name__ == "__main__":
    main(sys.argv[1:])
