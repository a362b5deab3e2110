"""RMC1: the paper's recommendation model class 1 (its `-tiny` variant comes from `configs.tiny`).

Source: Gupta et al., "The Architectural Implications of Facebook's DNN-based Personalized
Recommendation", HPCA 2020 (Table I), with the exact sizes of the open-source DeepRecSys model
configs (Gupta et al., ISCA 2020). 8 tables x 4,000,000 rows x 32 dim, 80 lookups per table,
4.1 GB of float32 tables. The model sits between RMC2 and RMC3:
FC-heavy at batch 1, embedding-heavy from about batch 64 in the paper's CPU breakdown.

Benchmark:
    python -m benchmarks.latency --model=rmc1
    python -m benchmarks.latency --model=rmc1-tiny
"""

from recjax.models.dlrm import DLRMConfig, one_bag_per_table


def rmc1() -> DLRMConfig:
    tables, features = one_bag_per_table(
        "rmc1_table", count=8, num_rows=4_000_000, dim=32, pooling_factor=80
    )
    return DLRMConfig(
        name="rmc1",
        tables=tables,
        features=features,
        dense_features=128,
        bottom_mlp=(64, 32),
        top_mlp=(256, 64, 1),
        interaction="cat",
    )


PRESETS = {"rmc1": rmc1}
