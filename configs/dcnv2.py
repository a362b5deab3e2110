"""DCN-V2 as MLPerf's DLRM-v2: `dcnv2-full` (Criteo 1TB, about 104 GB of tables) and `dcnv2`
(every table capped at 1,000,000 rows: 4.2 GB, runnable on one 24 GB machine). Their `-tiny`
variants come from `configs.tiny`.

Source: Wang et al., "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale
Learning to Rank Systems", WWW 2021; the sizes are MLPerf Training's DLRM-v2 reference (TorchRec's
`torchrec_dlrm` example with `--interaction_type=dcn`): 13 dense features, bottom MLP
512-256-128, 26 multi-hot bags of dim 128 with the fixed synthetic multi-hot sizes below, a
3-layer low-rank cross network of rank 512 over the (1 + 26) x 128 = 3456 concatenation, top MLP
1024-1024-512-256-1. The vocabulary is Criteo 1TB's, with the largest tables capped at 40 M rows
as MLPerf does. `dcnv2-full` is refused by the memory check on any machine that cannot hold it
(it names `dcnv2`); running it needs tables sharded over several hosts.

`dcnv2-full-scaled` divides every table's rows by 1,000: the sharding headline case.

Benchmark:
    python -m benchmarks.latency --model=dcnv2 --modes=jit,eager,torch
    python -m benchmarks.latency --model=dcnv2-full-scaled --processes=4 --memory_per_process=64MiB
    python -m benchmarks.breakdown --model=dcnv2
    python -m benchmarks.latency --model=dcnv2-tiny --override=cross_rank=256 \
        --override=cross_layers=2
"""

from recjax.models.dcnv2 import DCNv2Config, multi_hot_bags

# Rows of the 26 tables in MLPerf DLRM-v2 (Criteo 1TB, at most 40 M rows per table).
CRITEO_1TB_VOCABULARY = (
    40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10, 2209,
    11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36,
)  # fmt: skip
# Ids per bag of the 26 features (MLPerf DLRM-v2's multi-hot sizes).
MULTI_HOT_SIZES = (
    3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1,
)  # fmt: skip
CAPPED_ROWS = 1_000_000
# dcnv2-full-scaled: every table's rows divided by SCALE (none cut below SMALLEST_SCALED_ROWS).
SCALE = 1_000
SMALLEST_SCALED_ROWS = 1_000


def _dcnv2(
    name: str, max_rows: int | None, vocabulary: tuple[int, ...] = CRITEO_1TB_VOCABULARY
) -> DCNv2Config:
    tables, features = multi_hot_bags(vocabulary, MULTI_HOT_SIZES, 128, max_rows)
    return DCNv2Config(
        name=name,
        tables=tables,
        features=features,
        dense_features=13,
        bottom_mlp=(512, 256, 128),
        top_mlp=(1024, 1024, 512, 256, 1),
        cross_layers=3,
        cross_rank=512,
    )


def dcnv2_full() -> DCNv2Config:
    return _dcnv2("dcnv2-full", max_rows=None)


def dcnv2() -> DCNv2Config:
    return _dcnv2("dcnv2", max_rows=CAPPED_ROWS)


def dcnv2_full_scaled() -> DCNv2Config:
    """dcnv2-full with every table's rows divided by 1,000 (tables of 1,000 rows or fewer kept):
    about 110 MB, which one machine holds whole (so a sharded run can be compared with the
    unsharded model) but which exceeds the 64 MiB each of 4 processes is allowed in the sharding
    headline run (docs/design/sharding.md)."""
    rows = tuple(
        max(count // SCALE, min(count, SMALLEST_SCALED_ROWS)) for count in CRITEO_1TB_VOCABULARY
    )
    return _dcnv2("dcnv2-full-scaled", max_rows=None, vocabulary=rows)


PRESETS = {"dcnv2-full": dcnv2_full, "dcnv2": dcnv2, "dcnv2-full-scaled": dcnv2_full_scaled}
# Presets to suggest when one does not fit in memory: runnable variants of the same architecture.
SMALLER_VARIANTS = {"dcnv2-full": ("dcnv2",)}
