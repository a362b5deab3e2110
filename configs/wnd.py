"""Wide & Deep (Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016) at
DeepRecSys's sizes.

Source: the open-source DeepRecSys model configs (Gupta et al., ISCA 2020,
`models/configs/wide_and_deep.json`): 27 tables x 1,000,000 rows x 32 dim, one id per table, 512
dense features, deep MLP 1376-1024-512-256-1 (input 512 + 27 x 32); 3.5 GB of float32 tables.
recjax adds the paper's wide part, which DeepRecSys leaves out: one weight per id of every sparse
feature (27 dim-1 tables of 1,000,000 rows, 108 MB), summed into the logit.

Benchmark:
    python -m benchmarks.latency --model=wnd --modes=jit,eager,torch
    python -m benchmarks.breakdown --model=wnd
    python -m benchmarks.latency --model=wnd-tiny
"""

from recjax.models.wide_deep import WideDeepConfig, one_id_features


def wnd() -> WideDeepConfig:
    tables, features, wide_tables = one_id_features("wnd_table", [1_000_000] * 27, dim=32)
    return WideDeepConfig(
        name="wnd",
        tables=tables,
        features=features,
        dense_features=512,
        deep_mlp=(1024, 512, 256, 1),
        wide_tables=wide_tables,
    )


PRESETS = {"wnd": wnd}
