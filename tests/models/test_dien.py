"""DIEN against an independent NumPy reference: forward pass, auxiliary loss, negatives, empty
sequences, one compilation for every length, and the config's checks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.synthetic import synthetic_features
from recjax.models.dien import DIENConfig, sample_negatives
from recjax.runtime.inference import CompiledPredictor, EagerPredictor
from tests.compile_counter import CompileCounter
from tests.models import sequence_reference as reference


def small_dien(**changes) -> DIENConfig:
    """dien-tiny with S = 6 (and any other field changed)."""
    return dataclasses.replace(configs.get("dien-tiny"), sequence_length=6, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"attention": "mlp", "attention_activation": "relu", "mlp_activation": "relu"},
        {"attention": "mlp", "attention_activation": "dice", "dice_affine": True},
        {"gru_hidden": 24, "auxiliary_loss": "mlp", "mlp_activation": "prelu", "dense_features": 2},
        {"recurrence_unroll": 4},
        {"recurrence_loop": "scan", "recurrence_unroll": 2},
        {"recurrence_block_size": 2},
        {"recurrence_block_size": 0},
    ],
    ids=[
        "paper",
        "mlp-attention",
        "mlp-dice",
        "hidden-24",
        "unroll-4",
        "scan",
        "length-sorted-blocks",
        "one-loop",
    ],
)
def test_dien_matches_the_numpy_reference(changes):
    config = small_dien(**changes)
    model = reference.randomize(config.build(nnx.Rngs(0)), seed=1)
    batch = reference.batch_with_lengths(config, [0, 1, 3, 6, 5], seed=2)
    expected = reference.dien_logits(model, batch)
    assert np.ptp(expected) > 0.1, "the reference must not be saturated or constant"
    got = jax.jit(lambda m, b: m(b))(model, batch)["click"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_dien_full_length_preset_matches_the_reference():
    config = configs.get("dien-tiny")
    model = reference.randomize(config.build(nnx.Rngs(3)), seed=4, weight_scale=0.15)
    batch = synthetic_features(config, 3, seed=5)
    np.testing.assert_allclose(
        jax.jit(lambda m, b: m(b))(model, batch)["click"],
        reference.dien_logits(model, batch),
        rtol=1e-5,
        atol=1e-5,
    )


def test_the_stages_give_masked_states_softmax_weights_and_the_last_valid_state():
    config = small_dien()
    model = reference.randomize(config.build(nnx.Rngs(0)), seed=6)
    batch = reference.batch_with_lengths(config, [0, 2, 6], seed=7)
    embedded = model.embed(batch)
    interests = np.asarray(model.extract_interests(embedded))
    scores = np.asarray(model.attention_scores(embedded, jnp.asarray(interests)))
    final = np.asarray(model.evolve(embedded, jnp.asarray(interests), jnp.asarray(scores)))
    np.testing.assert_array_equal(interests[0], 0.0)  # empty: no state at all
    np.testing.assert_array_equal(interests[1, 2:], 0.0)  # zeros past the length
    assert np.all(np.abs(interests[1, :2]).sum(-1) > 0)
    np.testing.assert_array_equal(scores[0], 0.0)
    np.testing.assert_allclose(scores[1:].sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(scores[1, 2:], 0.0)
    np.testing.assert_array_equal(final[0], 0.0)
    p = reference.parameters(model)
    for sample, length in ((1, 2), (2, 6)):
        states = reference.gru_sequence(
            reference.embeddings(model, batch)[sample][2], p, ("interest_extractor",), 64
        )
        np.testing.assert_allclose(interests[sample, :length], states, rtol=1e-5, atol=1e-6)
        evolved = reference.gru_sequence(
            states, p, ("interest_evolution",), 64, scores[sample, :length]
        )
        np.testing.assert_allclose(final[sample], evolved[-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("auxiliary", ["inner_product", "mlp"])
def test_the_auxiliary_loss_matches_the_reference(auxiliary):
    config = small_dien(auxiliary_loss=auxiliary)
    model = reference.randomize(config.build(nnx.Rngs(0)), seed=8, table_scale=0.3)
    batch = reference.batch_with_lengths(config, [0, 1, 2, 6, 4], seed=9)
    negatives = sample_negatives(config, batch, seed=10)
    got = jax.jit(lambda m, b, n: m.auxiliary_loss(b, n))(model, batch, negatives)
    expected = reference.dien_auxiliary_loss(model, batch, negatives)
    assert expected > 0
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_the_training_loss_adds_the_weighted_auxiliary_loss_and_has_gradients():
    # The native lookup has no gradient yet (issue 11); the gather form has.
    config = small_dien(auxiliary_loss_weight=0.5, embedding_lowering="gather_sum")
    model = reference.randomize(config.build(nnx.Rngs(0)), seed=11, table_scale=0.3)
    batch = dataclasses.replace(
        reference.batch_with_lengths(config, [3, 6, 1, 0], seed=12),
        labels={"click": np.asarray([1.0, 0.0, 1.0, 0.0], np.float32)},
    )
    negatives = sample_negatives(config, batch, seed=13)
    total, parts = model.training_loss(batch, negatives)
    probabilities = 1.0 / (1.0 + np.exp(-reference.dien_logits(model, batch)))
    labels = batch.labels["click"]
    target = -np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities))
    np.testing.assert_allclose(parts["target"], target, rtol=1e-5)
    np.testing.assert_allclose(total, parts["target"] + 0.5 * parts["auxiliary"], rtol=1e-6)

    def loss(params):
        return nnx.merge(graphdef, params, rest).training_loss(batch, negatives)[0]

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    gradients = jax.grad(loss)(params)
    norms = {path: float(jnp.abs(g.get_value()).sum()) for path, g in nnx.to_flat_state(gradients)}
    assert all(np.isfinite(list(norms.values())))
    assert norms[("interest_extractor", "hidden_kernel")] > 0  # reached through L_aux and L_target


def test_negatives_are_other_ids_of_the_same_table_and_zero_past_the_length():
    config = configs.get("dien-tiny")
    batch = synthetic_features(config, 64, seed=14)
    negatives = sample_negatives(config, batch, seed=15)
    lengths = np.asarray(batch.lengths_of("behaviour_item"))
    valid = np.arange(100)[None, :] < lengths[:, None]
    for name in config.behaviour_features:
        clicked, drawn = np.asarray(batch.ids_of(name)), negatives[name]
        assert drawn.shape == clicked.shape and drawn.dtype == np.int32
        assert np.all(drawn[valid] != clicked[valid])
        assert drawn.min() >= 0 and drawn.max() < 1000
        np.testing.assert_array_equal(drawn[~valid], 0)
        assert len(np.unique(drawn[valid])) > 500


def test_one_compilation_per_batch_size_for_every_length():
    config = configs.get("dien-tiny")
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


def test_preset_cost_follows_from_the_config():
    config = configs.get("dien")
    gru = 2 * 3 * 64 * (64 + 64)
    attention = 2 * 64 * 64 + 2 * 64 * 100
    mlp = 2 * (192 * 200 + 200 * 80 + 80)
    assert config.dense_flops_per_sample() == 100 * gru + attention + 100 * gru + mlp
    assert config.mlp_in_features == 32 + 64 + 64 + 32


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gru_hidden": 32}, r"auxiliary_loss='inner_product' compare.*gru_hidden must equal"),
        (
            {"gru_hidden": 32, "auxiliary_loss": "mlp", "attention": "mlp"},
            r"attention='mlp' compare",
        ),
        ({"attention": "dot"}, r"unknown attention 'dot'; expected one of \('bilinear', 'mlp'\)"),
        ({"auxiliary_loss": "bpr"}, r"unknown auxiliary_loss 'bpr'"),
        ({"recurrence_unroll": 0}, r"recurrence_unroll must be positive"),
        ({"recurrence_block_size": -1}, r"recurrence_block_size at least 0; .*=-1"),
        ({"recurrence_loop": "fori"}, r"unknown recurrence_loop 'fori'"),
        ({"auxiliary_mlp": ()}, r"auxiliary_mlp must be positive widths"),
    ],
)
def test_bad_configs_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(configs.get("dien-tiny"), **change)


def test_negatives_must_cover_every_behaviour_feature():
    config = small_dien()
    model = config.build(nnx.Rngs(0))
    batch = reference.batch_with_lengths(config, [1, 2], seed=0)
    with pytest.raises(ValueError, match=r"missing \['behaviour_category'\]"):
        model.auxiliary_loss(batch, {"behaviour_item": np.zeros((2, 6), np.int32)})
