"""One contract test over every registered family: what the infrastructure relies on."""

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.models.family import STAGE_KINDS, ModelConfig, abstract_model
from recjax.models.registry import FAMILIES, family_of
from recjax.runtime.inference import CompiledPredictor, EagerPredictor
from tests.compile_counter import CompileCounter

FULL = [name for name in configs.names() if not name.endswith("-tiny")]
TINY = [name for name in configs.names() if name.endswith("-tiny")]


def test_every_family_has_a_preset_and_every_preset_a_family():
    families = {family_of(configs.get(name)) for name in FULL}
    assert families == set(FAMILIES), "every registered family needs at least one preset"
    for config_class in FAMILIES.values():
        assert issubclass(config_class, ModelConfig)


def run_stages(model, batch):
    values = {"batch": batch}
    for stage in model.config.stages():
        assert stage.kind in STAGE_KINDS
        values[stage.name] = stage.apply(model, *(values[name] for name in stage.inputs))
    return values[model.config.stages()[-1].name]


@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_runs_jit_equals_eager_and_compiles_once(name):
    config = configs.get(name)
    model = config.build(nnx.Rngs(0))
    batches = {size: to_device(synthetic_features(config, size, seed=size)) for size in (1, 4)}
    with CompileCounter() as counter:
        predictor = CompiledPredictor(model, [1, 4])
        for _ in range(3):
            outputs = {size: predictor(batch) for size, batch in batches.items()}
    assert counter.count == 2, "exactly one compilation per batch size"
    eager = EagerPredictor(model)(batches[4])
    assert set(outputs[4]) == set(config.heads)
    for head in config.heads:
        probabilities = np.asarray(outputs[4][head])
        assert probabilities.shape == (4,)
        assert np.all((probabilities > 0) & (probabilities < 1))
        np.testing.assert_allclose(probabilities, eager[head], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", TINY)
def test_stages_compose_to_the_model(name):
    config = configs.get(name)
    model = config.build(nnx.Rngs(1))
    batch = synthetic_features(config, 3, seed=0)
    staged = jax.jit(run_stages)(model, batch)
    whole = jax.jit(lambda m, b: m(b))(model, batch)
    assert set(staged) == set(whole) == set(config.heads)
    for head in config.heads:
        np.testing.assert_allclose(staged[head], whole[head], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", FULL)
def test_full_preset_builds_shape_only_and_reports_its_cost(name):
    config = configs.get(name)
    model = abstract_model(config)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
    cost = config.cost()
    assert cost["parameter_bytes"] > cost["table_bytes"] == sum(t.num_bytes for t in config.tables)
    assert cost["dense_flops_per_sample"] > 0 and cost["embedding_bytes_per_sample"] > 0
    assert config.architecture_summary()
