import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.checks import InvalidInputError
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.runtime.inference import CompiledPredictor, EagerPredictor
from tests.compile_counter import CompileCounter


@pytest.fixture(scope="module")
def model():
    return configs.get("rmc2-tiny").build(nnx.Rngs(0))


def test_jit_equals_eager_and_the_sigmoid_of_the_logits(model):
    batch = to_device(synthetic_features(model.config, 5, seed=0))
    compiled = CompiledPredictor(model, [5])(batch)
    eager = EagerPredictor(model)(batch)
    np.testing.assert_allclose(compiled["click"], eager["click"], rtol=1e-5, atol=1e-7)
    logits = np.asarray(model(batch)["click"], np.float64)
    np.testing.assert_allclose(compiled["click"], 1 / (1 + np.exp(-logits)), rtol=1e-5)


def test_exactly_one_compile_per_batch_size(model):
    batches = {
        size: to_device(synthetic_features(model.config, size, seed=size)) for size in (1, 3)
    }
    with CompileCounter() as counter:
        predictor = CompiledPredictor(model, [1, 3])
        after_compile = counter.count
        for _ in range(4):
            for batch in batches.values():
                predictor(batch)["click"].block_until_ready()
        predictor.compile(3)  # already compiled: a no-op
    assert after_compile == 2
    assert counter.count == 2
    assert sorted(predictor.compile_seconds) == [1, 3]


def test_compile_counter_sees_compilations():
    """The guard above can fail: a fresh jit of a new shape is counted."""
    with CompileCounter() as counter:
        jax.jit(lambda x: x * 3 + 1)(jnp.ones((17, 3))).block_until_ready()
    assert counter.count >= 1


def test_parameters_are_arguments_not_constants(model):
    predictor = CompiledPredictor(model, [2])
    batch = synthetic_features(model.config, 2, seed=0)
    text = predictor._jitted.lower(predictor.params, batch).as_text()
    assert re.search(r"%arg\d+: tensor<32000x64xf32>", text), "the table should be an argument"
    # A closed-over table becomes a 2,048,000-float constant in the program text.
    (table,) = model.sparse_arch.table_buffers().values()
    closed_over = jax.jit(lambda ids: table[ids]).lower(batch.ids).as_text()
    assert len(closed_over) > 10 * len(text)


@pytest.mark.parametrize("predictor_type", [CompiledPredictor, EagerPredictor])
def test_invalid_inputs_are_rejected(model, predictor_type):
    batch = synthetic_features(model.config, 2, seed=0)
    predictor = predictor_type(model)
    if isinstance(predictor, CompiledPredictor):
        predictor.compile(2)
    for bad_id in (1000, -1):
        ids = batch.ids.copy()
        ids[1, 30 * 120 + 7] = bad_id
        with pytest.raises(InvalidInputError, match=rf"first is {bad_id} at \[sample 1, feature"):
            predictor(dataclasses.replace(batch, ids=ids))
    dense = batch.dense.copy()
    dense[1, 0] = np.inf
    with pytest.raises(InvalidInputError, match="non-finite dense"):
        predictor(dataclasses.replace(batch, dense=dense))


def test_labels_in_the_batch_are_ignored(model):
    predictor = CompiledPredictor(model, [2])
    plain = predictor(synthetic_features(model.config, 2, seed=0))
    labelled = predictor(synthetic_features(model.config, 2, seed=0, labels=True))
    np.testing.assert_array_equal(plain["click"], labelled["click"])


def test_uncompiled_batch_size_is_refused(model):
    predictor = CompiledPredictor(model, [2])
    with pytest.raises(ValueError, match=r"batch size 4; compiled sizes are \[2\]"):
        predictor(synthetic_features(model.config, 4, seed=0))
    with pytest.raises(ValueError, match="positive; got 0"):
        predictor.compile(0)
