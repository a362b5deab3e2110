"""The eager PyTorch Wide & Deep against recjax: same weights, same inputs, same outputs."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.checks import InvalidInputError
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.models.family import abstract_model
from recjax.models.wide_deep import WideDeepConfig
from recjax.runtime.inference import CompiledPredictor
from tests.models.numpy_reference import randomize_biases

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
torch_wide_deep = pytest.importorskip("recjax.interop.torch_wide_deep")

# Bags of several ids, two features sharing a table (and its wide table), two dims.
SHARED = WideDeepConfig(
    name="shared",
    tables=(
        TableConfig("a", 41, 4),
        TableConfig("b", 23, 6),
        TableConfig("a_wide", 41, 1),
        TableConfig("b_wide", 23, 1),
    ),
    features=(
        FeatureConfig("one", "a", capacity=1),
        FeatureConfig("bag", "b", capacity=3),
        FeatureConfig("again", "a", capacity=2),
    ),
    dense_features=5,
    deep_mlp=(9, 1),
    wide_tables=("a_wide", "b_wide", "a_wide"),
)


@pytest.mark.parametrize(
    "config",
    [
        configs.get("wnd-tiny"),
        SHARED,
        dataclasses.replace(SHARED, wide_tables=()),
        dataclasses.replace(SHARED, dense_features=0),
    ],
    ids=["wnd-tiny", "shared_tables", "deep_only", "no_dense"],
)
def test_torch_agrees_with_recjax_jit(config):
    model = config.build(nnx.Rngs(1))
    randomize_biases(model, seed=0)
    batch = to_device(synthetic_features(config, 16, seed=2))
    expected = np.asarray(CompiledPredictor(model, [16])(batch)["click"])
    predictor = torch_wide_deep.TorchPredictor(model)
    for got in (predictor(batch), predictor(predictor.prepare(batch))):
        assert set(got) == {"click"}
        assert got["click"].shape == (16,) and got["click"].dtype == np.float32
        np.testing.assert_allclose(got["click"], expected, rtol=1e-5, atol=0)


def test_torch_module_layout():
    module = torch_wide_deep.TorchWideDeep(SHARED)
    shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert shapes == {
        "embeddings.a.weight": (41, 4),
        "embeddings.b.weight": (23, 6),
        "wide.a_wide.weight": (41, 1),
        "wide.b_wide.weight": (23, 1),
        "deep.0.weight": (9, 5 + 4 + 6 + 4),
        "deep.0.bias": (9,),
        "deep.2.weight": (1, 9),
        "deep.2.bias": (1,),
    }
    assert all(bag.mode == "sum" for bag in [*module.embeddings.values(), *module.wide.values()])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pooling": "mean"}, r"feature 'bag' \(pooling='mean'\)"),
        ({"fixed_length": False}, r"feature 'bag' \(fixed_length=False \(ragged\)\)"),
        ({"weighted": True}, r"feature 'bag' \(weighted=True\)"),
    ],
)
def test_features_the_twin_cannot_represent_are_refused_before_any_work(change, message):
    features = list(SHARED.features)
    features[1] = dataclasses.replace(features[1], **change)
    config = dataclasses.replace(SHARED, features=tuple(features))
    # An abstract model holds no weights: the refusal must come before any is read.
    with pytest.raises(ValueError, match=r"runs fixed-length, unweighted sum bags .*" + message):
        torch_wide_deep.TorchPredictor(abstract_model(config))


def test_table_names_that_are_no_module_dict_keys_are_refused():
    tables = (TableConfig("a.b", 41, 4), *SHARED.tables[1:])
    features = (FeatureConfig("one", "a.b", capacity=1), *SHARED.features[1:2])
    config = dataclasses.replace(
        SHARED, tables=tables, features=features, wide_tables=("a_wide", "b_wide")
    )
    with pytest.raises(ValueError, match=r"table 'a.b' \(not a valid nn.ModuleDict key\)"):
        torch_wide_deep.TorchPredictor(abstract_model(config))


def test_invalid_batches_are_refused_like_the_compiled_predictor():
    config = configs.get("wnd-tiny")
    model = config.build(nnx.Rngs(0))
    compiled = CompiledPredictor(model, [2])
    predictor = torch_wide_deep.TorchPredictor(model)
    batch = synthetic_features(config, 2, seed=0)
    ids = np.array(batch.ids)
    ids[0, 5] = -1
    dense = np.array(batch.dense)
    dense[1, 7] = np.nan
    for bad, message in (
        (dataclasses.replace(batch, ids=ids), r"1 sparse id\(s\) out of range; the first is -1"),
        (dataclasses.replace(batch, dense=dense), r"non-finite dense feature"),
    ):
        with pytest.raises(InvalidInputError, match=message) as expected:
            compiled(bad)
        with pytest.raises(InvalidInputError) as got:
            predictor(bad)
        assert str(got.value) == str(expected.value)
