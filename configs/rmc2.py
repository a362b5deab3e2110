"""RMC2: the paper's recommendation model class 2 (its `-tiny` variant comes from `configs.tiny`).

Source: Gupta et al., "The Architectural Implications of Facebook's DNN-based Personalized
Recommendation", HPCA 2020 (Table I), with the exact sizes of the open-source DeepRecSys model
configs (Gupta et al., ISCA 2020). 32 tables x 500,000 rows x 64 dim, 120 lookups per table,
4.1 GB of float32 tables. The model is embedding-bound: about
1 MB of embedding rows gathered per sample.

Benchmark:
    python -m benchmarks.latency --model=rmc2
    python -m benchmarks.latency --model=rmc2-tiny
"""

from recjax.models.dlrm import DLRMConfig, one_bag_per_table


def rmc2() -> DLRMConfig:
    tables, features = one_bag_per_table(
        "rmc2_table", count=32, num_rows=500_000, dim=64, pooling_factor=120
    )
    return DLRMConfig(
        name="rmc2",
        tables=tables,
        features=features,
        dense_features=256,
        bottom_mlp=(128, 64),
        top_mlp=(128, 64, 1),
        interaction="cat",
    )


PRESETS = {"rmc2": rmc2}
