"""The activations of DIN and DIEN (Dice, PReLU) and the feed-forward stack that uses them.

Shapes: `B` batch, `S` sequence positions, `H` the width of a layer.

Dice (Zhou et al., KDD 2018, eq. 7) is PReLU with a data-dependent rectification point:

    p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))        f(s) = p(s) s + (1 - p(s)) alpha s

In training, E[s] and Var[s] are the mini-batch's mean and variance per unit; in inference they
are the moving averages kept in training. recjax keeps them as `nnx.BatchStat`s of an
`nnx.BatchNorm` (without the scale and bias of batch normalization, which the paper does not have;
`affine=True` adds them, as deepctr-torch's Dice, an `nn.BatchNorm1d`, does). A module is in
inference mode when built (`use_running_average=True`): the statistics are constants and the
predictors never change them; `model.train()` switches every Dice to batch statistics, whose
moving averages the call then updates, and `model.eval()` back.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = ("dice", "prelu", "relu", "sigmoid")
DICE_EPSILON = 1e-8  # the paper's epsilon
PRELU_INIT = 0.25  # He et al.'s (and torch's) initial slope


class Dice(nnx.Module):
    """Dice over the last axis: one alpha and one pair of statistics per unit.

    Input  [..., H]; the statistics are taken over every other axis (batch and positions).
    Output [..., H].

    Example:
        >>> dice = Dice(80, rngs=nnx.Rngs(0))
        >>> dice(jnp.ones((4, 100, 80))).shape
        (4, 100, 80)
    """

    def __init__(
        self, width: int, *, epsilon: float = DICE_EPSILON, affine: bool = False, rngs: nnx.Rngs
    ):
        self.normalize = nnx.BatchNorm(
            width,
            use_running_average=True,
            epsilon=epsilon,
            use_bias=affine,
            use_scale=affine,
            rngs=rngs,
        )
        self.alpha = nnx.Param(jnp.zeros((width,), jnp.float32))

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """`mask` (broadcastable to x, True where valid) limits training statistics to the
        valid positions; inference ignores it."""
        p = jax.nn.sigmoid(self.normalize(x, mask=mask))
        return p * x + (1.0 - p) * self.alpha[...] * x


class PReLU(nnx.Module):
    """max(0, s) + alpha min(0, s), one alpha per unit. Input and output [..., H]."""

    def __init__(self, width: int, *, rngs: nnx.Rngs):
        del rngs
        self.alpha = nnx.Param(jnp.full((width,), PRELU_INIT, jnp.float32))

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        del mask
        return jnp.where(x > 0, x, self.alpha[...] * x)


class Elementwise(nnx.Module):
    """A parameter-free activation, "relu" or "sigmoid". Input and output [..., H]."""

    def __init__(self, name: str):
        if name not in ("relu", "sigmoid"):
            raise ValueError(f"Elementwise: unknown name {name!r}; expected 'relu' or 'sigmoid'.")
        self.name = name

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        del mask
        return jax.nn.relu(x) if self.name == "relu" else jax.nn.sigmoid(x)


def check_activation(owner: str, field: str, name: str) -> None:
    """Raises ValueError naming `owner`'s `field` unless `name` is one of ACTIVATIONS."""
    if name not in ACTIVATIONS:
        raise ValueError(f"{owner}: unknown {field} {name!r}; expected one of {ACTIVATIONS}.")


def make_activation(
    name: str, width: int, *, dice_epsilon: float, dice_affine: bool, rngs: nnx.Rngs
) -> nnx.Module:
    """The activation module called `name` (one of ACTIVATIONS) for a layer of `width` units."""
    check_activation("activation", "name", name)
    if name == "dice":
        return Dice(width, epsilon=dice_epsilon, affine=dice_affine, rngs=rngs)
    if name == "prelu":
        return PReLU(width, rngs=rngs)
    return Elementwise(name)


class FeedForward(nnx.Module):
    """Fully connected layers, each but the last followed by the named activation.

    Input  [..., in_features] float32.
    Output [..., layer_sizes[-1]] float32.

    Kernels are Glorot (Xavier) normal, biases zero. The activation unit of DIN (80-40-1) and the
    MLPs of DIN and DIEN (200-80-1) are such stacks; the last layer is linear (a score or a logit).

    Example:
        >>> mlp = FeedForward(192, (200, 80, 1), activation="dice", rngs=nnx.Rngs(0))
        >>> mlp(jnp.ones((8, 192))).shape
        (8, 1)
    """

    def __init__(
        self,
        in_features: int,
        layer_sizes: Sequence[int],
        *,
        activation: str,
        dice_epsilon: float = DICE_EPSILON,
        dice_affine: bool = False,
        rngs: nnx.Rngs,
    ):
        if not layer_sizes or min(layer_sizes) <= 0:
            raise ValueError(
                f"FeedForward needs at least one layer of positive width; got {tuple(layer_sizes)}."
            )
        widths = (in_features, *layer_sizes)
        self.layers = nnx.List(
            [
                nnx.Linear(
                    width_in,
                    width_out,
                    kernel_init=nnx.initializers.glorot_normal(),
                    bias_init=nnx.initializers.zeros_init(),
                    rngs=rngs,
                )
                for width_in, width_out in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.activations = nnx.List(
            [
                make_activation(
                    activation, width, dice_epsilon=dice_epsilon, dice_affine=dice_affine, rngs=rngs
                )
                for width in layer_sizes[:-1]
            ]
        )

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """`mask` (broadcastable to [..., 1], True where valid) goes to the Dice activations."""
        return self.continue_from_first_layer(self.layers[0](x), mask)

    def continue_from_first_layer(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """The stack from the output of its first linear layer on (for a caller that computes
        that layer in its own way)."""
        for layer, act in zip(self.layers[1:], self.activations, strict=True):
            x = layer(act(x, mask))
        return x


def feed_forward_flops(in_features: int, layer_sizes: Sequence[int]) -> int:
    """Floating-point operations of one row through the layers (a multiply-add counts as two)."""
    widths = (in_features, *layer_sizes)
    return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
