import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax import native
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.inputs.synthetic import synthetic_features
from recjax.layers.embedding_bag import LOWERINGS
from recjax.models.family import abstract_model
from recjax.models.wide_deep import WideDeepConfig
from tests.models.numpy_reference import mlp, pool, randomize_biases


def numpy_wide(model, batch):
    """[B] w_wide^T x: each feature's bag in its wide table, summed over the features."""
    config = model.config
    return sum(
        pool(model, batch, feature, wide)[:, 0]
        for feature, wide in zip(config.features, config.wide_tables, strict=True)
    )


def numpy_deep_input(model, batch):
    """[B, F + sum_k D_k]: the dense features, then each feature's bag, in feature order."""
    pooled = [pool(model, batch, f, f.table) for f in model.config.features]
    return np.concatenate([np.asarray(batch.dense, np.float64), *pooled], axis=1)


def numpy_wide_deep(model, batch):
    """Eq. 3 of Cheng et al. before the sigmoid, in NumPy: logits [B]."""
    deep = mlp(numpy_deep_input(model, batch), model.deep_arch, relu_last=False)[:, 0]
    if not model.config.wide_tables:
        return deep
    return deep + numpy_wide(model, batch)


# Tables of two dims (two stacked groups plus the wide one), bags of several ids, a ragged bag, a
# mean bag, a weighted bag, and two features sharing a table and its wide table.
TABLES = (
    TableConfig("a", 41, 4),
    TableConfig("b", 23, 6),
    TableConfig("c", 17, 4),
    TableConfig("a_wide", 41, 1),
    TableConfig("b_wide", 23, 1),
    TableConfig("c_wide", 17, 1),
)
FEATURES = (
    FeatureConfig("one_id", "a", capacity=1),
    FeatureConfig("ragged", "b", capacity=3, fixed_length=False),
    FeatureConfig("mean", "c", capacity=2, pooling="mean"),
    FeatureConfig("weighted", "b", capacity=2, weighted=True),
)
SMALL = WideDeepConfig(
    name="small",
    tables=TABLES,
    features=FEATURES,
    dense_features=5,
    deep_mlp=(12, 7, 1),
    wide_tables=("a_wide", "b_wide", "c_wide", "b_wide"),
)


@pytest.mark.parametrize("lowering", ["auto", *sorted(LOWERINGS)])
@pytest.mark.parametrize(
    "change",
    [{}, {"wide_tables": ()}, {"dense_features": 0}],
    ids=["wide_and_deep", "deep_only", "no_dense"],
)
def test_forward_matches_numpy(change, lowering):
    if lowering == "native" and not native.availability()[0]:
        pytest.skip(f"native library unavailable: {native.availability()[1]}")
    config = dataclasses.replace(SMALL, embedding_lowering=lowering, **change)
    model = config.build(nnx.Rngs(0))
    randomize_biases(model, seed=3)
    batch = synthetic_features(config, 7, seed=2)
    got = jax.jit(lambda m, x: m(x))(model, batch)
    assert list(got) == ["click"] and got["click"].shape == (7,)
    np.testing.assert_allclose(got["click"], numpy_wide_deep(model, batch), rtol=1e-5, atol=1e-6)
    assert np.ptp(np.asarray(got["click"])) > 0


def test_the_wide_part_is_the_sum_of_the_ids_weights():
    model = SMALL.build(nnx.Rngs(1))
    batch = synthetic_features(SMALL, 6, seed=4)
    np.testing.assert_allclose(model.wide(batch), numpy_wide(model, batch), rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(model.wide(batch)) != 0)


def test_tiny_preset_runs_a_real_forward():
    config = configs.get("wnd-tiny")
    model = config.build(nnx.Rngs(0))
    randomize_biases(model, seed=5)
    batch = synthetic_features(config, 3, seed=0)
    got = np.asarray(model(batch)["click"])
    np.testing.assert_allclose(got, numpy_wide_deep(model, batch), rtol=1e-5, atol=1e-5)


def test_stages():
    with_wide = [(s.name, s.inputs, s.kind) for s in SMALL.stages()]
    assert with_wide == [
        ("embedding", ("batch",), "embedding"),
        ("wide", ("batch",), "embedding"),
        ("deep_mlp", ("batch", "embedding", "wide"), "fc"),
    ]
    deep_only = dataclasses.replace(SMALL, wide_tables=())
    assert [s.name for s in deep_only.stages()] == ["embedding", "deep_mlp"]


def test_preset_has_the_issues_sizes():
    config = configs.get("wnd")
    deep = [config.table(f.table) for f in config.features]
    wide = [config.table(name) for name in config.wide_tables]
    assert len(deep) == len(wide) == 27 and len(config.tables) == 54
    assert {(t.num_rows, t.dim) for t in deep} == {(1_000_000, 32)}
    assert {(t.num_rows, t.dim) for t in wide} == {(1_000_000, 1)}
    assert {f.capacity for f in config.features} == {1}
    assert config.dense_features == 512
    assert (config.deep_in_features, *config.deep_mlp) == (1376, 1024, 512, 256, 1)


def test_preset_costs_by_hand():
    config = configs.get("wnd")
    assert config.table_bytes == 27 * 1_000_000 * (32 + 1) * 4 == 3_564_000_000
    deep = 1376 * 1024 + 1024 * 512 + 512 * 256 + 256 * 1
    assert config.dense_flops_per_sample() == 2 * deep == 4_129_280
    weights = deep + 1024 + 512 + 256 + 1  # one bias b (eq. 3): the deep MLP's last
    assert config.parameter_bytes == config.table_bytes + 4 * weights
    # 27 ids, each gathered as a 32-float row and as one wide weight.
    assert config.embedding_bytes_per_sample == 27 * (32 + 1) * 4
    assert config.lookups_per_sample == 2 * 27
    model = abstract_model(config)
    shapes = {name: table.shape for name, table in model.sparse_arch.tables.items()}
    assert shapes == {"d32_float32": (27_000_000, 32), "d1_float32": (27_000_000, 1)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"deep_mlp": (8, 2)}, r"deep_mlp must end in one unit \(the logit\); got \(8, 2\)"),
        ({"deep_mlp": ()}, r"deep_mlp must be a non-empty tuple of positive layer widths"),
        ({"heads": ("a", "b")}, r"Wide & Deep has one output head"),
        (
            {"wide_tables": ("a_wide",)},
            r"one wide table per sparse feature, in feature order \(4\)",
        ),
        (
            {"wide_tables": ("a_wide", "b_wide", "c_wide", "nope")},
            r"wide_tables names 'nope' for feature 'weighted', which is not a table",
        ),
        (
            {"wide_tables": ("a_wide", "b_wide", "c_wide", "c_wide")},
            r"wide table 'c_wide' must have the rows of table 'b' \(23\) of feature 'weighted'",
        ),
        (
            {"wide_tables": ("a_wide", "b", "c_wide", "b_wide")},
            r"wide table 'b' must have dim 1 \(one weight per id\); got dim 6",
        ),
        ({"dense_features": -1}, r"dense_features must be >= 0"),
    ],
)
def test_invalid_configs_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **change)


def test_wide_tables_read_by_a_feature_and_sequence_features_are_refused():
    features = (*FEATURES, FeatureConfig("odd", "a_wide", capacity=1))
    with pytest.raises(ValueError, match=r"wide table 'a_wide' is also read by a sparse feature"):
        dataclasses.replace(SMALL, features=features, wide_tables=(*SMALL.wide_tables, "a_wide"))
    features = (*FEATURES[:3], FeatureConfig("history", "b", capacity=4, pooling="none"))
    with pytest.raises(ValueError, match=r"got sequence features \['history'\]"):
        dataclasses.replace(SMALL, features=features)
