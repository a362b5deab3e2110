"""RMC2: the paper's recommendation model class 2, and a tiny variant for tests.

Source: Gupta et al., "The Architectural Implications of Facebook's DNN-based Personalized
Recommendation", HPCA 2020 (Table I), with the exact sizes of the open-source DeepRecSys model
configs (Gupta et al., ISCA 2020). 32 tables x 500,000 rows x 64 dim, 120 lookups per table,
4.1 GB of float32 tables. The model is embedding-bound: about
1 MB of embedding rows gathered per sample.

Benchmark:
    python -m benchmarks.latency --model=rmc2
    python -m benchmarks.latency --model=rmc2-tiny
"""

import dataclasses

from recjax.models.dlrm import DLRMConfig, uniform_tables

TINY_ROWS = 1_000


def rmc2() -> DLRMConfig:
    return DLRMConfig(
        name="rmc2",
        dense_features=256,
        bottom_mlp=(128, 64),
        tables=uniform_tables("rmc2_table", count=32, num_rows=500_000, dim=64),
        pooling_factor=120,
        top_mlp=(128, 64, 1),
        interaction="cat",
    )


def rmc2_tiny() -> DLRMConfig:
    """RMC2 with 1,000 rows per table: the same MLPs, table count, dim and pooling factor."""
    full = rmc2()
    return dataclasses.replace(
        full,
        name="rmc2-tiny",
        tables=uniform_tables("rmc2_table", count=32, num_rows=TINY_ROWS, dim=64),
    )


PRESETS = {"rmc2": rmc2, "rmc2-tiny": rmc2_tiny}
