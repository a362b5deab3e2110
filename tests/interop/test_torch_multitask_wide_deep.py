"""The eager PyTorch multi-task Wide & Deep (shared bottom and MMoE) against recjax."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.checks import InvalidInputError
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.models.family import abstract_model
from recjax.runtime.inference import CompiledPredictor
from tests.models.numpy_reference import randomize_biases
from tests.models.test_multitask_wide_deep import SMALL

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
torch_mt = pytest.importorskip("recjax.interop.torch_multitask_wide_deep")

# SMALL's features as the twin runs them: fixed-length, unweighted sum bags.
SUM_BAGS = dataclasses.replace(
    SMALL,
    features=tuple(
        dataclasses.replace(f, pooling="sum", fixed_length=True, weighted=False)
        for f in SMALL.features
    ),
)


@pytest.mark.parametrize(
    "config",
    [
        configs.get("mtwnd-tiny"),
        dataclasses.replace(configs.get("mtwnd-tiny"), experts=3),
        SUM_BAGS,
        dataclasses.replace(SUM_BAGS, experts=2, wide_tables=()),
    ],
    ids=["mtwnd-tiny", "mtwnd-tiny-mmoe", "small", "small_mmoe_deep_only"],
)
def test_torch_agrees_with_recjax_jit(config):
    model = config.build(nnx.Rngs(1))
    randomize_biases(model, seed=0)
    batch = to_device(synthetic_features(config, 16, seed=2))
    expected = CompiledPredictor(model, [16])(batch)
    predictor = torch_mt.TorchPredictor(model)
    for got in (predictor(batch), predictor(predictor.prepare(batch))):
        assert list(got) == list(config.heads)
        for task in config.heads:
            assert got[task].shape == (16,) and got[task].dtype == np.float32
            np.testing.assert_allclose(got[task], np.asarray(expected[task]), rtol=1e-5, atol=0)


def test_torch_module_layout_with_mmoe():
    config = dataclasses.replace(SUM_BAGS, experts=2)
    module = torch_mt.TorchMultiTaskWideDeep(config)
    keys = set(module.state_dict())
    assert {"experts.0.0.weight", "experts.1.2.bias", "gates.click.weight"} <= keys
    assert "gates.click.bias" not in keys, "Ma et al.'s gates have no bias"
    assert {"towers.share.0.weight", "towers.share.2.bias", "wide.b_wide.weight"} <= keys
    assert not any(key.startswith("shared_bottom.") for key in keys)


def test_unsupported_features_and_task_names_are_refused_before_any_work():
    with pytest.raises(ValueError, match=r"feature 'ragged' \(fixed_length=False \(ragged\)\)"):
        torch_mt.TorchPredictor(abstract_model(SMALL))
    config = dataclasses.replace(SUM_BAGS, heads=("click", "keys"))
    with pytest.raises(ValueError, match=r"the task names \['keys'\] are attributes of"):
        torch_mt.TorchPredictor(abstract_model(config))


def test_invalid_batches_are_refused_like_the_compiled_predictor():
    config = configs.get("mtwnd-tiny")
    model = config.build(nnx.Rngs(0))
    compiled = CompiledPredictor(model, [2])
    predictor = torch_mt.TorchPredictor(model)
    batch = synthetic_features(config, 2, seed=0)
    ids = np.array(batch.ids)
    ids[1, 42] = 1000
    bad = dataclasses.replace(batch, ids=ids)
    with pytest.raises(InvalidInputError, match=r"feature 'mtwnd_table_42'") as expected:
        compiled(bad)
    with pytest.raises(InvalidInputError) as got:
        predictor(bad)
    assert str(got.value) == str(expected.value)
