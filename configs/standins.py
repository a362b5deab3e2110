"""Stand-ins for presets that have not landed yet, found by the same names.

`get(name)` returns the registered preset when there is one and the stand-in only otherwise, so a
command such as `python -m benchmarks.plan --model=dcnv2-full` means the real preset once it is in
`configs` (delete the stand-in then) and this stand-in until it is.

dcnv2-full: the shape of MLPerf's DLRM-v2 (the zoo issue's `dcnv2-full`): 26 tables with Criteo
1TB's vocabulary (the largest capped at 40 M rows, about 104 GB of float32 rows at dim 128), read by
26 fixed-length bags with MLPerf's multi-hot sizes, 13 dense features, bottom MLP 512-256-128, top
MLP 1024-1024-512-256-1. It is a DLRM with the "cat" interaction in place of DCN-V2's cross
network: the sparse arch, which is all sharding touches, is the same.

dcnv2-full-scaled: the same 26 tables with rows scaled down 1,000 times (tables of 1,000 rows or
fewer kept as they are, none cut below 1,000): about 110 MB of tables, which a machine holds whole
(so the sharded model can be compared with the unsharded one) but which exceed the 64 MiB each of
4 processes is allowed in the headline run (docs/design/sharding.md).

    python -m benchmarks.plan --model=dcnv2-full --hosts=8 --memory_per_host=24GiB
    python -m benchmarks.latency --model=dcnv2-full-scaled --processes=4 --memory_per_process=64MiB
"""

import configs
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.models.dlrm import DLRMConfig
from recjax.models.family import ModelConfig

# Rows of the 26 tables in MLPerf DLRM-v2 (Criteo 1TB, at most 40 M rows per table).
CRITEO_1TB_VOCABULARY = (
    40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10, 2209,
    11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36,
)  # fmt: skip
# Ids per bag of the 26 features (MLPerf DLRM-v2's multi-hot sizes).
MULTI_HOT_SIZES = (
    3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1,
)  # fmt: skip
SCALE = 1_000
SMALLEST_SCALED_ROWS = 1_000


def _dcnv2_shaped(name: str, rows: tuple[int, ...]) -> DLRMConfig:
    # Named as TorchRec's DLRM example (and the zoo's dcnv2 presets) name them.
    tables = tuple(TableConfig(f"t_cat_{index}", count, 128) for index, count in enumerate(rows))
    features = tuple(
        FeatureConfig(f"cat_{index}", table.name, size)
        for index, (table, size) in enumerate(zip(tables, MULTI_HOT_SIZES, strict=True))
    )
    return DLRMConfig(
        name=name,
        tables=tables,
        features=features,
        dense_features=13,
        bottom_mlp=(512, 256, 128),
        top_mlp=(1024, 1024, 512, 256, 1),
        interaction="cat",
    )


def dcnv2_full() -> DLRMConfig:
    return _dcnv2_shaped("dcnv2-full", CRITEO_1TB_VOCABULARY)


def dcnv2_full_scaled() -> DLRMConfig:
    rows = tuple(
        max(count // SCALE, min(count, SMALLEST_SCALED_ROWS)) for count in CRITEO_1TB_VOCABULARY
    )
    return _dcnv2_shaped("dcnv2-full-scaled", rows)


STANDINS = {"dcnv2-full": dcnv2_full, "dcnv2-full-scaled": dcnv2_full_scaled}


def get(name: str) -> ModelConfig:
    """The preset called `name`, else its stand-in; ValueError naming both lists if neither."""
    if name in configs.names() or name not in STANDINS:
        try:
            return configs.get(name)
        except ValueError as error:
            raise ValueError(f"{error} Stand-ins: {sorted(STANDINS)}.") from None
    return STANDINS[name]()
