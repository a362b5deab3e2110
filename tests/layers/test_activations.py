"""Dice, PReLU and the feed-forward stack against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recjax.layers.activations import Dice, FeedForward, PReLU, make_activation


def numpy_dice(x, mean, var, alpha, epsilon, scale=1.0, bias=0.0):
    probability = 1.0 / (1.0 + np.exp(-((x - mean) / np.sqrt(var + epsilon) * scale + bias)))
    return probability * x + (1.0 - probability) * alpha * x


def set_dice(dice, rng, width, affine=False):
    dice.normalize.mean.set_value(jnp.asarray(rng.normal(0, 1, width), jnp.float32))
    dice.normalize.var.set_value(jnp.asarray(rng.uniform(0.2, 3, width), jnp.float32))
    dice.alpha.set_value(jnp.asarray(rng.uniform(-1, 1, width), jnp.float32))
    if affine:
        dice.normalize.scale.set_value(jnp.asarray(rng.uniform(0.5, 2, width), jnp.float32))
        dice.normalize.bias.set_value(jnp.asarray(rng.normal(0, 1, width), jnp.float32))


@pytest.mark.parametrize("affine", [False, True])
def test_dice_in_inference_uses_its_moving_averages(affine):
    rng = np.random.default_rng(0)
    dice = Dice(5, epsilon=1e-3, affine=affine, rngs=nnx.Rngs(0))
    set_dice(dice, rng, 5, affine)
    x = rng.normal(0, 2, (3, 4, 5)).astype(np.float32)
    n = dice.normalize
    expected = numpy_dice(
        x,
        np.asarray(n.mean[...]),
        np.asarray(n.var[...]),
        np.asarray(dice.alpha[...]),
        1e-3,
        np.asarray(n.scale[...]) if affine else 1.0,
        np.asarray(n.bias[...]) if affine else 0.0,
    )
    np.testing.assert_allclose(jax.jit(lambda d, x: d(x))(dice, x), expected, rtol=1e-5, atol=1e-6)
    # A sample's output does not depend on the others (constants, not batch statistics).
    np.testing.assert_allclose(dice(x[:1]), expected[:1], rtol=1e-5, atol=1e-6)


def test_dice_in_training_normalizes_with_the_valid_positions_of_the_batch_and_updates():
    rng = np.random.default_rng(1)
    dice = Dice(3, rngs=nnx.Rngs(0))
    set_dice(dice, rng, 3)
    x = rng.normal(1, 2, (2, 5, 3)).astype(np.float32)
    valid = np.asarray([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], bool)[:, :, None]
    x_padded = np.where(valid, x, 100.0).astype(np.float32)  # padding must not move the statistics
    old_mean = np.asarray(dice.normalize.mean[...])
    dice.train()
    got = np.asarray(dice(x_padded, valid))
    chosen = x[valid[:, :, 0]]  # [5, 3]
    mean, var = chosen.mean(0), chosen.var(0)
    expected = numpy_dice(x_padded, mean, var, np.asarray(dice.alpha[...]), 1e-8)
    np.testing.assert_allclose(got[valid[:, :, 0]], expected[valid[:, :, 0]], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dice.normalize.mean[...], 0.99 * old_mean + 0.01 * mean, rtol=1e-5)
    dice.eval()
    assert dice.normalize.use_running_average


def test_prelu_and_the_named_activations():
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    prelu = PReLU(4, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(prelu(x), np.where(x > 0, x, 0.25 * x))
    np.testing.assert_allclose(
        make_activation("relu", 4, dice_epsilon=1e-8, dice_affine=False, rngs=nnx.Rngs(0))(x),
        np.maximum(x, 0),
    )
    np.testing.assert_allclose(
        make_activation("sigmoid", 4, dice_epsilon=1e-8, dice_affine=False, rngs=nnx.Rngs(0))(x),
        1 / (1 + np.exp(-x)),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match=r"unknown name 'swish'; expected one of \('dice'"):
        make_activation("swish", 4, dice_epsilon=1e-8, dice_affine=False, rngs=nnx.Rngs(0))


def test_feed_forward_is_linear_activation_linear():
    rng = np.random.default_rng(2)
    mlp = FeedForward(6, (5, 4, 1), activation="prelu", rngs=nnx.Rngs(0))
    for act in mlp.activations:
        act.alpha.set_value(jnp.asarray(rng.uniform(-1, 1, act.alpha.shape), jnp.float32))
    x = rng.normal(size=(7, 6)).astype(np.float32)
    y = x.astype(np.float64)
    for index, layer in enumerate(mlp.layers):
        y = y @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
        if index < 2:
            y = np.where(y > 0, y, np.asarray(mlp.activations[index].alpha[...]) * y)
    np.testing.assert_allclose(mlp(x), y, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"at least one layer of positive width; got \(\)"):
        FeedForward(6, (), activation="relu", rngs=nnx.Rngs(0))
