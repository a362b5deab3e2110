"""DeepFM at Criteo Kaggle scale (its `-tiny` variant comes from `configs.tiny`).

Source: Guo et al., "DeepFM: A Factorization-Machine based Neural Network for CTR Prediction",
IJCAI 2017, on the Criteo Display Advertising Challenge (Kaggle) data: 13 dense (integer) and 26
categorical features, one id each. The vocabulary sizes are those of the whole Kaggle training
set (every distinct value kept, as TorchRec's and deepctr's Criteo examples count them). Deep
component 400-400-400 with ReLU (the paper's setting) and one output unit; embedding dim 16. The
13 dense features are fields of the FM and the deep input, each with its own vector scaled by its
value, as in the paper (`dense_as_fields`; `--override=dense_as_fields=false` runs deepctr's
convention instead). 26 tables, 33.8 M rows: 2.16 GB of embeddings plus 135 MB of first-order
weights (float32).

Benchmark:
    python -m benchmarks.latency --model=deepfm --modes=jit,eager,torch
    python -m benchmarks.breakdown --model=deepfm
    python -m benchmarks.latency --model=deepfm-tiny
"""

from recjax.models.deepfm import DeepFMConfig, one_hot_fields

# Distinct values of C1 ... C26 in the Criteo Kaggle training set.
CRITEO_KAGGLE_VOCABULARY = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
CRITEO_DENSE_FEATURES = 13


def deepfm() -> DeepFMConfig:
    tables, features = one_hot_fields(CRITEO_KAGGLE_VOCABULARY, dim=16)
    return DeepFMConfig(
        name="deepfm",
        tables=tables,
        features=features,
        dense_features=CRITEO_DENSE_FEATURES,
        deep_mlp=(400, 400, 400, 1),
        dense_as_fields=True,
    )


PRESETS = {"deepfm": deepfm}
