"""The local activation unit, bilinear attention, masked softmax and pooling against NumPy."""

import jax
import numpy as np
import pytest
from flax import nnx

from recjax.layers.attention import (
    BilinearAttention,
    LocalActivationUnit,
    attention_weights,
    masked_softmax,
    weighted_sum,
)
from tests.models import sequence_reference as reference


@pytest.mark.parametrize("activation", ["dice", "prelu"])
def test_the_factored_activation_unit_equals_the_mlp_over_the_concatenation(activation):
    unit = reference.randomize(
        LocalActivationUnit(6, (5, 4), activation=activation, rngs=nnx.Rngs(0)), seed=1
    )
    rng = np.random.default_rng(2)
    behaviours = rng.normal(size=(3, 7, 6)).astype(np.float32)
    candidate = rng.normal(size=(3, 6)).astype(np.float32)
    valid = np.ones((3, 7), bool)
    got = jax.jit(lambda u, h, c, v: u(h, c, v))(unit, behaviours, candidate, valid)
    p = reference.parameters(unit)
    expected = np.stack(
        [
            reference.activation_unit_scores(
                p, ("mlp",), behaviours[b], candidate[b], activation, 1e-8
            )
            for b in range(3)
        ]
    )
    assert got.shape == (3, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_bilinear_attention_is_h_w_c():
    attention = BilinearAttention(4, 3, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(3)
    states = rng.normal(size=(2, 5, 4)).astype(np.float32)
    candidate = rng.normal(size=(2, 3)).astype(np.float32)
    kernel = np.asarray(attention.kernel[...])
    expected = np.einsum("bsh,hd,bd->bs", states, kernel, candidate)
    np.testing.assert_allclose(attention(states, candidate), expected, rtol=1e-5, atol=1e-6)


def test_masked_softmax_normalizes_over_the_valid_positions_only():
    scores = np.asarray([[1.0, 2.0, 3.0, 50.0], [0.5, -1.0, 80.0, 9.0], [7.0, 7.0, 7.0, 7.0]])
    lengths = np.asarray([3, 2, 0])
    valid = np.arange(4)[None, :] < lengths[:, None]
    got = np.asarray(masked_softmax(scores, valid))
    for row, length in enumerate(lengths[:2]):
        expected = np.exp(scores[row, :length] - scores[row, :length].max())
        np.testing.assert_allclose(got[row, :length], expected / expected.sum(), rtol=1e-6)
        np.testing.assert_array_equal(got[row, length:], 0.0)
    np.testing.assert_array_equal(got[2], 0.0)  # an empty sequence: no weight, no NaN


def test_attention_weights_and_weighted_sum():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(2, 4)).astype(np.float32)
    values = rng.normal(size=(2, 4, 3)).astype(np.float32)
    valid = np.asarray([[True, True, False, False], [True, True, True, True]])
    raw = np.asarray(attention_weights(scores, valid, softmax=False))
    np.testing.assert_array_equal(raw, np.where(valid, scores, 0.0))
    normalized = np.asarray(attention_weights(scores, valid, softmax=True))
    np.testing.assert_allclose(normalized.sum(1), 1.0, rtol=1e-6)
    pooled = weighted_sum(raw, values)
    np.testing.assert_allclose(pooled, (raw[:, :, None] * values).sum(1), rtol=1e-5, atol=1e-6)
