"""DIN against an independent NumPy reference, masking and empty sequences, one compilation for
every length, and the config's checks."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.features import FeatureConfig
from recjax.inputs.synthetic import synthetic_features
from recjax.models.din import DINConfig
from recjax.runtime.inference import CompiledPredictor, EagerPredictor
from tests.compile_counter import CompileCounter
from tests.models import sequence_reference as reference


def small_din(**changes) -> DINConfig:
    """din-tiny with S = 6 (and any other field changed)."""
    return dataclasses.replace(configs.get("din-tiny"), sequence_length=6, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"attention_softmax": True},
        {"attention_activation": "prelu", "mlp_activation": "prelu"},
        {"attention_activation": "relu", "mlp_activation": "sigmoid", "dice_affine": True},
        {"dice_affine": True, "dense_features": 3},
    ],
    ids=["paper", "softmax", "prelu", "relu-sigmoid", "affine-dense"],
)
def test_din_matches_the_numpy_reference(changes):
    config = small_din(**changes)
    model = reference.randomize(config.build(nnx.Rngs(0)), seed=1)
    batch = reference.batch_with_lengths(config, [0, 1, 3, 6, 5], seed=2)
    expected = reference.din_logits(model, batch)
    assert np.ptp(expected) > 0.1, "the reference must not be saturated or constant"
    got = jax.jit(lambda m, b: m(b))(model, batch)["click"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_din_full_length_preset_matches_the_reference():
    config = configs.get("din-tiny")
    model = reference.randomize(config.build(nnx.Rngs(3)), seed=4, table_scale=0.2)
    batch = synthetic_features(config, 3, seed=5)
    assert config.sequence_length == 100
    np.testing.assert_allclose(
        jax.jit(lambda m, b: m(b))(model, batch)["click"],
        reference.din_logits(model, batch),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("softmax", [False, True])
def test_an_empty_sequence_gives_a_zero_interest(softmax):
    config = small_din(attention_softmax=softmax)
    model = reference.randomize(config.build(nnx.Rngs(0)), seed=6)
    batch = reference.batch_with_lengths(config, [0, 0, 4], seed=7)
    embedded = model.embed(batch)
    interest = np.asarray(model.interest(embedded))
    assert np.all(np.isfinite(interest))
    np.testing.assert_array_equal(interest[:2], 0.0)
    assert np.abs(interest[2]).sum() > 0


def test_ids_past_the_length_change_nothing():
    config = small_din()
    model = reference.randomize(config.build(nnx.Rngs(0)), seed=8)
    batch = reference.batch_with_lengths(config, [2, 0, 6], seed=9)
    ids = np.array(batch.ids)
    for name in config.behaviour_features:
        column = batch.layout.columns[batch.layout.index(name)]
        ids[0, column + 2 : column + 6] = 7  # past sample 0's length 2
        ids[1, column : column + 6] = 11  # sample 1 is empty
    noisy = dataclasses.replace(batch, ids=ids)
    np.testing.assert_array_equal(model(noisy)["click"], model(batch)["click"])


def test_one_compilation_per_batch_size_for_every_length():
    config = configs.get("din-tiny")
    model = config.build(nnx.Rngs(0))
    batches = [
        reference.batch_with_lengths(config, lengths, seed=index)
        for index, lengths in enumerate(([0, 0, 0, 0], [100, 100, 100, 100], [1, 37, 0, 100]))
    ]
    with CompileCounter() as counter:
        predictor = CompiledPredictor(model, [4])
        outputs = [predictor(batch)["click"] for batch in batches]
    assert counter.count == 1, "one program for batch size 4, whatever the lengths"
    assert not np.allclose(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[2], EagerPredictor(model)(batches[2])["click"], rtol=1e-5)


def test_dice_uses_constant_statistics_in_inference_and_batch_statistics_in_training():
    config = small_din()
    model = reference.randomize(config.build(nnx.Rngs(0)), seed=10)
    batch = reference.batch_with_lengths(config, [3, 6, 1, 2], seed=11)
    before = reference.parameters(model)
    first = np.asarray(model(batch)["click"])
    np.testing.assert_array_equal(model(batch)["click"], first)
    assert all(np.array_equal(before[k], v) for k, v in reference.parameters(model).items())
    model.train()
    trained = np.asarray(model(batch)["click"])
    moved = [k for k, v in reference.parameters(model).items() if not np.array_equal(before[k], v)]
    assert moved and all(path[-1] in ("mean", "var") for path in moved)
    assert not np.allclose(trained, first)
    model.eval()
    np.testing.assert_allclose(
        model(batch)["click"], reference.din_logits(model, batch), rtol=1e-5, atol=1e-5
    )


def test_sequence_length_sets_the_behaviour_capacity():
    config = dataclasses.replace(configs.get("din"), sequence_length=50)
    capacities = {feature.name: feature.capacity for feature in config.features}
    assert capacities["behaviour_item"] == capacities["behaviour_category"] == 50
    assert capacities["candidate_item"] == 1 and capacities["user_profile"] == 3
    assert config.mlp_in_features == 32 + 64 + 32 + 64 and config.item_width == 64


def test_preset_cost_follows_from_the_config():
    config = configs.get("din")
    unit = 2 * (256 * 80 + 80 * 40 + 40)
    mlp = 2 * (192 * 200 + 200 * 80 + 80)
    assert config.dense_flops_per_sample() == 100 * (unit + 2 * 64) + mlp
    assert config.embedding_bytes_per_sample == (3 + 1 + 1 + 100 + 100 + 3) * 32 * 4
    assert config.table_bytes == (1_000_000 + 10_000_000 + 100_000 + 10_000_000) * 32 * 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sequence_length": 0}, r"sequence_length must be positive; got 0"),
        ({"mlp": (200, 80)}, r"mlp must be positive widths ending in 1"),
        ({"attention_activation": "gelu"}, r"unknown attention_activation 'gelu'"),
        ({"mlp_activation": "tanh"}, r"unknown mlp_activation 'tanh'"),
        ({"attention_mlp": ()}, r"attention_mlp must be positive widths"),
        ({"candidate_features": ("candidate_item",)}, r"the same number"),
        ({"behaviour_features": ("behaviour_item", "nope")}, r"behaviour feature 'nope' is not"),
    ],
)
def test_bad_configs_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(configs.get("din-tiny"), **change)


def test_features_must_fit_their_roles():
    config = configs.get("din-tiny")
    features = {feature.name: feature for feature in config.features}

    def with_feature(name, **changes):
        replaced = dataclasses.replace(features[name], **changes)
        return tuple(replaced if f.name == name else f for f in config.features)

    with pytest.raises(ValueError, match=r"candidate feature 'candidate_item' must hold exactly"):
        dataclasses.replace(config, features=with_feature("candidate_item", capacity=2))
    with pytest.raises(ValueError, match=r"lengths_from='behaviour_item'"):
        dataclasses.replace(config, features=with_feature("behaviour_category", lengths_from=None))
    extra = FeatureConfig("clicks", "item", 5, pooling="none", fixed_length=False)
    with pytest.raises(ValueError, match=r"the only sequence features may be"):
        dataclasses.replace(config, features=(*config.features, extra))
