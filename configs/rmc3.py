"""RMC3: the paper's recommendation model class 3 (its `-tiny` variant comes from `configs.tiny`).

Source: Gupta et al., "The Architectural Implications of Facebook's DNN-based Personalized
Recommendation", HPCA 2020 (Table I), with the exact sizes of the open-source DeepRecSys model
configs (Gupta et al., ISCA 2020). 10 tables x 2,000,000 rows x 32 dim, 20 lookups per table,
2.6 GB of float32 tables. The model is FC-bound: about 6.4 MFLOP per sample, mostly in the
2560-wide bottom MLP.

Benchmark:
    python -m benchmarks.latency --model=rmc3
    python -m benchmarks.latency --model=rmc3-tiny
"""

from recjax.models.dlrm import DLRMConfig, one_bag_per_table


def rmc3() -> DLRMConfig:
    tables, features = one_bag_per_table(
        "rmc3_table", count=10, num_rows=2_000_000, dim=32, pooling_factor=20
    )
    return DLRMConfig(
        name="rmc3",
        tables=tables,
        features=features,
        dense_features=2560,
        bottom_mlp=(1024, 256, 32),
        top_mlp=(512, 256, 1),
        interaction="cat",
    )


PRESETS = {"rmc3": rmc3}
