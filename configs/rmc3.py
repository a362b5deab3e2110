"""RMC3: the paper's recommendation model class 3, and a tiny variant for tests.

Source: Gupta et al., "The Architectural Implications of Facebook's DNN-based Personalized
Recommendation", HPCA 2020 (Table I), with the exact sizes of the open-source DeepRecSys model
configs (Gupta et al., ISCA 2020). 10 tables x 2,000,000 rows x 32 dim, 20 lookups per table,
2.6 GB of float32 tables. The model is FC-bound: about 6.4 MFLOP per sample, mostly in the
2560-wide bottom MLP.

Benchmark:
    python -m benchmarks.latency --model=rmc3
    python -m benchmarks.latency --model=rmc3-tiny
"""

import dataclasses

from recjax.models.dlrm import DLRMConfig, uniform_tables

TINY_ROWS = 1_000


def rmc3() -> DLRMConfig:
    return DLRMConfig(
        name="rmc3",
        dense_features=2560,
        bottom_mlp=(1024, 256, 32),
        tables=uniform_tables("rmc3_table", count=10, num_rows=2_000_000, dim=32),
        pooling_factor=20,
        top_mlp=(512, 256, 1),
        interaction="cat",
    )


def rmc3_tiny() -> DLRMConfig:
    """RMC3 with 1,000 rows per table: the same MLPs, table count, dim and pooling factor."""
    full = rmc3()
    return dataclasses.replace(
        full,
        name="rmc3-tiny",
        tables=uniform_tables("rmc3_table", count=10, num_rows=TINY_ROWS, dim=32),
    )


PRESETS = {"rmc3": rmc3, "rmc3-tiny": rmc3_tiny}
