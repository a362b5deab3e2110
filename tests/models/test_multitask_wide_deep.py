import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.models.family import abstract_model
from recjax.models.multitask_wide_deep import MultiTaskWideDeepConfig
from recjax.runtime.inference import CompiledPredictor, EagerPredictor
from tests.compile_counter import CompileCounter
from tests.models.numpy_reference import linear, mlp, randomize_biases, softmax
from tests.models.test_contract import run_stages
from tests.models.test_wide_deep import FEATURES, TABLES, numpy_deep_input, numpy_wide


def numpy_multitask(model, batch):
    """Shared bottom (Ma et al. eq. 1) or MMoE (eq. 4-6), one tower per task, plus the wide
    logit, in NumPy: {task: logits [B]}."""
    config = model.config
    x = numpy_deep_input(model, batch)
    wide = numpy_wide(model, batch) if config.wide_tables else 0.0
    logits = {}
    for task in config.heads:
        if config.experts:
            experts = [mlp(x, expert, relu_last=True) for expert in model.experts]  # E x [B, H]
            gate = softmax(linear(x, model.gates[task]))  # [B, E]
            tower_input = sum(gate[:, [e]] * experts[e] for e in range(config.experts))
        else:
            tower_input = mlp(x, model.shared_bottom, relu_last=True)
        logits[task] = mlp(tower_input, model.towers[task], relu_last=False)[:, 0] + wide
    return logits


SMALL = MultiTaskWideDeepConfig(
    name="small",
    tables=TABLES,
    features=FEATURES,
    dense_features=5,
    heads=("click", "like", "share"),
    shared_mlp=(12, 9),
    task_mlp=(6, 1),
    wide_tables=("a_wide", "b_wide", "c_wide", "b_wide"),
)


@pytest.mark.parametrize(
    "change",
    [{}, {"experts": 3}, {"experts": 1}, {"wide_tables": ()}, {"experts": 2, "dense_features": 0}],
    ids=["shared_bottom", "mmoe", "mmoe_one_expert", "no_wide", "mmoe_no_dense"],
)
def test_forward_matches_numpy(change):
    config = dataclasses.replace(SMALL, **change)
    model = config.build(nnx.Rngs(0))
    randomize_biases(model, seed=4)
    batch = synthetic_features(config, 7, seed=3)
    got = jax.jit(lambda m, x: m(x))(model, batch)
    expected = numpy_multitask(model, batch)
    assert list(got) == list(config.heads)
    for task in config.heads:
        assert got[task].shape == (7,)
        np.testing.assert_allclose(got[task], expected[task], rtol=1e-5, atol=1e-6)
    assert np.ptp(np.asarray(got["click"])) > 0
    assert not np.allclose(got["click"], got["like"]), "each task has its own tower"


def test_the_gates_mix_the_experts_per_task():
    config = dataclasses.replace(SMALL, experts=4)
    model = config.build(nnx.Rngs(1))
    batch = synthetic_features(config, 5, seed=0)
    x = model.deep_input(batch, model.embed(batch))
    gates = np.asarray(model.run_gates(x))
    assert gates.shape == (5, 3, 4)
    np.testing.assert_allclose(gates.sum(axis=2), 1.0, rtol=1e-6)
    assert not np.allclose(gates[:, 0], gates[:, 1]), "one gate per task"
    assert model.run_experts(x).shape == (5, 4, 9)


def test_mmoe_jit_equals_eager_compiles_once_and_its_stages_compose():
    config = dataclasses.replace(SMALL, experts=3)
    model = config.build(nnx.Rngs(2))
    batches = {size: to_device(synthetic_features(config, size, seed=size)) for size in (1, 4)}
    with CompileCounter() as counter:
        predictor = CompiledPredictor(model, [1, 4])
        for _ in range(3):
            outputs = {size: predictor(batch) for size, batch in batches.items()}
    assert counter.count == 2, "exactly one compilation per batch size"
    eager = EagerPredictor(model)(batches[4])
    staged = jax.jit(run_stages)(model, batches[4])
    whole = jax.jit(lambda m, b: m(b))(model, batches[4])
    for task in config.heads:
        np.testing.assert_allclose(outputs[4][task], eager[task], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(staged[task], whole[task], rtol=1e-5, atol=1e-6)


def test_tiny_preset_runs_a_real_forward():
    config = configs.get("mtwnd-tiny")
    model = config.build(nnx.Rngs(0))
    randomize_biases(model, seed=6)
    batch = synthetic_features(config, 3, seed=0)
    got = model(batch)
    expected = numpy_multitask(model, batch)
    for task in config.heads:
        np.testing.assert_allclose(got[task], expected[task], rtol=1e-5, atol=1e-5)


def test_stages():
    assert [(s.name, s.inputs, s.kind) for s in SMALL.stages()] == [
        ("embedding", ("batch",), "embedding"),
        ("wide", ("batch",), "embedding"),
        ("shared_bottom", ("batch", "embedding"), "fc"),
        ("task_towers", ("shared_bottom", "wide"), "fc"),
    ]
    mmoe = dataclasses.replace(SMALL, experts=2, wide_tables=())
    assert [(s.name, s.inputs, s.kind) for s in mmoe.stages()] == [
        ("embedding", ("batch",), "embedding"),
        ("experts", ("batch", "embedding"), "fc"),
        ("gates", ("batch", "embedding"), "fc"),
        ("mixture", ("experts", "gates"), "interaction"),
        ("task_towers", ("mixture",), "fc"),
    ]


def test_preset_has_the_issues_sizes():
    config = configs.get("mtwnd")
    deep = [config.table(f.table) for f in config.features]
    assert [(t.num_rows, t.dim) for t in deep] == [(500_000, 32)] * 41 + [(5_000_000, 32)] * 2
    assert [config.table(name).dim for name in config.wide_tables] == [1] * 43
    assert {f.capacity for f in config.features} == {1}
    assert config.dense_features == 512
    assert config.heads == ("task_0", "task_1", "task_2", "task_3")
    assert (config.deep_in_features, *config.shared_mlp) == (1888, 1024, 512)
    assert (config.shared_mlp[-1], *config.task_mlp) == (512, 256, 128, 1)
    assert config.experts == 0


def test_preset_costs_by_hand():
    config = configs.get("mtwnd")
    rows = 41 * 500_000 + 2 * 5_000_000
    assert config.table_bytes == rows * (32 + 1) * 4 == 4_026_000_000
    shared = 1888 * 1024 + 1024 * 512
    tower = 512 * 256 + 256 * 128 + 128 * 1
    assert config.dense_flops_per_sample() == 2 * (shared + 4 * tower) == 6_226_944
    weights = shared + 1024 + 512 + 4 * (tower + 256 + 128 + 1)
    assert config.parameter_bytes == config.table_bytes + 4 * weights
    assert config.embedding_bytes_per_sample == 43 * (32 + 1) * 4
    assert config.lookups_per_sample == 2 * 43
    model = abstract_model(config)
    shapes = {name: table.shape for name, table in model.sparse_arch.tables.items()}
    assert shapes == {"d32_float32": (rows, 32), "d1_float32": (rows, 1)}


def test_mmoe_costs_by_hand():
    config = dataclasses.replace(configs.get("mtwnd"), experts=4)
    shared = 1888 * 1024 + 1024 * 512
    tower = 512 * 256 + 256 * 128 + 128 * 1
    gates = 1888 * 4  # per task, no bias
    mixture = 4 * 512  # per task: E multiply-adds per output
    flops = 2 * (4 * shared + 4 * gates + 4 * mixture + 4 * tower)
    assert config.dense_flops_per_sample() == flops
    weights = 4 * (shared + 1024 + 512) + 4 * gates + 4 * (tower + 256 + 128 + 1)
    assert config.parameter_bytes == config.table_bytes + 4 * weights
    assert "4 experts 1888-1024-512 (MMoE)" in config.architecture_summary()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"heads": ("click", "click")}, r"distinct task names .* got heads=\('click', 'click'\)"),
        ({"heads": ("click", "watch.time")}, r"Python identifiers"),
        ({"heads": ()}, r"one or more distinct task names"),
        ({"experts": -1}, r"experts must be 0 \(a shared bottom\) or a positive number"),
        ({"task_mlp": (6, 2)}, r"task_mlp must end in one unit \(the logit\); got \(6, 2\)"),
        ({"shared_mlp": ()}, r"shared_mlp must be a non-empty tuple of positive layer widths"),
        ({"wide_tables": ("a_wide",)}, r"one wide table per sparse feature"),
    ],
)
def test_invalid_configs_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **change)
