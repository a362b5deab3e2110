"""NCF: NeuMF (He et al., "Neural Collaborative Filtering", WWW 2017) at DeepRecSys's sizes.

Source: the open-source DeepRecSys model configs (Gupta et al., "DeepRecSys: A System for
Optimizing End-To-End At-scale Neural Recommendation Inference", ISCA 2020, `models/configs/
ncf.json`): GMF tables 2 x 140,000 x 64 (user, item), MLP tables 2 x 28,000 x 64, MLP tower
128-256-256-128-64, one id per table, no dense features; 86 MB of float32 tables. recjax follows
the paper where DeepRecSys does not: the GMF branch multiplies the user and item embeddings
(DeepRecSys sums them), and a NeuMF layer without bias fuses [GMF; MLP] into one logit (DeepRecSys
ends in a 64-wide ReLU layer). The four ids are four features (`recjax.models.ncf.FEATURES`).

Benchmark:
    python -m benchmarks.latency --model=ncf --modes=jit,eager,torch
    python -m benchmarks.breakdown --model=ncf
    python -m benchmarks.latency --model=ncf-tiny
"""

from recjax.models.ncf import NCFConfig, ncf_tables


def ncf() -> NCFConfig:
    tables, features = ncf_tables(gmf_rows=140_000, mlp_rows=28_000, gmf_dim=64, mlp_dim=64)
    return NCFConfig(
        name="ncf",
        tables=tables,
        features=features,
        dense_features=0,
        mlp_tower=(256, 256, 128, 64),
    )


PRESETS = {"ncf": ncf}
