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
from recjax.models.ncf import FEATURES, NCFConfig, ncf_tables
from tests.models.numpy_reference import mlp, randomize_biases, table


def numpy_ncf(model, batch):
    """NeuMF from the paper (eq. 9-12), in NumPy over the model's parameters: logits [B]."""
    config = model.config

    def embedding(name):
        feature = next(f for f in config.features if f.name == name)
        return table(model, feature.table)[np.asarray(batch.ids_of(name))[:, 0]]

    gmf = embedding("user_gmf") * embedding("item_gmf")
    tower = mlp(
        np.concatenate([embedding("user_mlp"), embedding("item_mlp")], axis=1),
        model.mlp_tower,
        relu_last=True,
    )
    h = np.asarray(model.neumf_layer.kernel[...], np.float64)  # [D + H, 1]
    assert model.neumf_layer.bias is None, "eq. 12 has no bias"
    return (np.concatenate([gmf, tower], axis=1) @ h)[:, 0]


# Different GMF and MLP dims and rows, and the features out of FEATURES' order: a mix-up of
# tables or features shows.
TABLES, FEATURES_IN_ORDER = ncf_tables(gmf_rows=53, mlp_rows=31, gmf_dim=8, mlp_dim=6)
SMALL = NCFConfig(
    name="small",
    tables=TABLES,
    features=tuple(reversed(FEATURES_IN_ORDER)),
    dense_features=0,
    mlp_tower=(16, 12, 5),
)


@pytest.mark.parametrize("lowering", ["auto", *sorted(LOWERINGS)])
def test_forward_matches_numpy(lowering):
    if lowering == "native" and not native.availability()[0]:
        pytest.skip(f"native library unavailable: {native.availability()[1]}")
    config = dataclasses.replace(SMALL, embedding_lowering=lowering)
    model = config.build(nnx.Rngs(0))
    randomize_biases(model, seed=1)
    batch = synthetic_features(config, 9, seed=1)
    assert batch.dense.shape == (9, 0)
    got = jax.jit(lambda m, x: m(x))(model, batch)
    assert list(got) == ["click"] and got["click"].shape == (9,)
    np.testing.assert_allclose(got["click"], numpy_ncf(model, batch), rtol=1e-5, atol=1e-6)
    assert np.ptp(np.asarray(got["click"])) > 0, "different samples should get different logits"


def test_tiny_preset_runs_a_real_forward():
    config = configs.get("ncf-tiny")
    model = config.build(nnx.Rngs(0))
    randomize_biases(model, seed=2)
    batch = synthetic_features(config, 5, seed=0)
    got = np.asarray(model(batch)["click"])
    np.testing.assert_allclose(got, numpy_ncf(model, batch), rtol=1e-5, atol=1e-6)


def test_stages_are_the_papers_parts():
    stages = SMALL.stages()
    assert [(stage.name, stage.inputs, stage.kind) for stage in stages] == [
        ("embedding", ("batch",), "embedding"),
        ("gmf", ("embedding",), "interaction"),
        ("mlp_tower", ("embedding",), "fc"),
        ("neumf_layer", ("gmf", "mlp_tower"), "fc"),
    ]


def test_preset_has_the_issues_sizes():
    config = configs.get("ncf")
    rows = {f.name: config.table(f.table).num_rows for f in config.features}
    dims = {f.name: config.table(f.table).dim for f in config.features}
    assert rows == {
        "user_gmf": 140_000,
        "item_gmf": 140_000,
        "user_mlp": 28_000,
        "item_mlp": 28_000,
    }
    assert set(dims.values()) == {64}
    assert {f.capacity for f in config.features} == {1}
    assert config.dense_features == 0 and config.heads == ("click",)
    assert (config.mlp_in_features, *config.mlp_tower) == (128, 256, 256, 128, 64)
    assert config.neumf_in_features == 64 + 64


def test_preset_costs_by_hand():
    config = configs.get("ncf")
    assert config.table_bytes == (2 * 140_000 + 2 * 28_000) * 64 * 4 == 86_016_000
    tower = 128 * 256 + 256 * 256 + 256 * 128 + 128 * 64
    # GMF: 64 multiplies; the tower and the NeuMF layer: multiply-adds, two FLOPs each.
    assert config.dense_flops_per_sample() == 64 + 2 * tower + 2 * 128 == 278_848
    weights = tower + (256 + 256 + 128 + 64) + 128  # the NeuMF layer has no bias
    assert config.parameter_bytes == config.table_bytes + 4 * weights
    assert config.embedding_bytes_per_sample == 4 * 64 * 4
    assert config.lookups_per_sample == 4
    model = abstract_model(config)
    (group,) = model.sparse_arch.tables.values()
    assert group.shape == (336_000, 64)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dense_features": 3}, r"NCF takes no dense features; dense_features must be 0, got 3"),
        ({"mlp_tower": ()}, r"mlp_tower must be a non-empty tuple of positive layer widths"),
        ({"mlp_tower": (8, 0)}, r"got \(8, 0\)"),
        ({"heads": ("click", "like")}, r"one output head; got heads=\('click', 'like'\)"),
        (
            {"features": FEATURES_IN_ORDER[:3]},
            r"must be exactly \['user_gmf', 'item_gmf', 'user_mlp', 'item_mlp'\]",
        ),
        ({"embedding_lowering": "magic"}, r"'magic'"),
    ],
)
def test_invalid_configs_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **change)


@pytest.mark.parametrize(
    "change", [{"capacity": 2}, {"fixed_length": False}, {"weighted": True}, {"pooling": "none"}]
)
def test_features_of_more_than_one_id_are_refused(change):
    features = list(FEATURES_IN_ORDER)
    features[2] = dataclasses.replace(features[2], **change)
    with pytest.raises(ValueError, match=r"NCF feature 'user_mlp' must hold one id per sample"):
        dataclasses.replace(SMALL, features=tuple(features))


def test_gmf_tables_must_share_a_dim_and_features_their_own_tables():
    tables = (*TABLES[:1], TableConfig("item_gmf_table", 53, 7), *TABLES[2:])
    with pytest.raises(ValueError, match=r"must share a dim; got 8 and 7"):
        dataclasses.replace(SMALL, tables=tables)
    features = (*FEATURES_IN_ORDER[:3], FeatureConfig("item_mlp", "user_mlp_table", 1))
    with pytest.raises(ValueError, match=r"each NCF feature reads a table of its own"):
        dataclasses.replace(SMALL, features=features)
    assert set(FEATURES) == {f.name for f in FEATURES_IN_ORDER}
