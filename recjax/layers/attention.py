"""Attention of a behaviour sequence to a candidate item: DIN's local activation unit, DIEN's
bilinear attention, and the masked pooling and softmax over the valid positions.

Shapes: `B` batch, `S` sequence positions, `E` width of a behaviour (and of the candidate), `H`
width of a hidden state, `H1` width of the activation unit's first layer.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from recjax.layers.activations import DICE_EPSILON, FeedForward, feed_forward_flops


class LocalActivationUnit(nnx.Module):
    """DIN's local activation unit (Zhou et al., KDD 2018, Fig. 2): the score of behaviour h
    for candidate c is a feed-forward network over [h, c, h - c, h * c].

    Input  behaviours [B, S, E], candidate [B, E], valid [B, S] bool (only used for the Dice
           statistics in training).
    Output scores [B, S] (raw: no sigmoid, no normalization, padding not masked).

    The first layer is evaluated in a factored form: with its kernel split into the blocks
    K_h, K_c, K_d, K_p that multiply h, c, h - c and h * c,

        [h, c, h - c, h * c] K = [h, h * c] [K_h + K_d; K_p] + c (K_c - K_d),

    so the candidate's term is computed once per sample instead of once per position, and the
    per-position multiply is 2E wide instead of 4E: half the FLOPs of the unit's largest layer.
    The parameters are those of the concatenated form (the tests check the two agree).

    Example:
        >>> unit = LocalActivationUnit(64, (80, 40), activation="dice", rngs=nnx.Rngs(0))
        >>> unit(jnp.ones((4, 100, 64)), jnp.ones((4, 64)), jnp.ones((4, 100), bool)).shape
        (4, 100)
    """

    def __init__(
        self,
        width: int,
        hidden: Sequence[int],
        *,
        activation: str,
        dice_epsilon: float = DICE_EPSILON,
        dice_affine: bool = False,
        rngs: nnx.Rngs,
    ):
        self.width = width
        self.mlp = FeedForward(
            4 * width,
            (*hidden, 1),
            activation=activation,
            dice_epsilon=dice_epsilon,
            dice_affine=dice_affine,
            rngs=rngs,
        )

    def __call__(self, behaviours: jax.Array, candidate: jax.Array, valid: jax.Array) -> jax.Array:
        first = self.mlp.layers[0]
        kernel_h, kernel_c, kernel_d, kernel_p = jnp.split(first.kernel[...], 4, axis=0)
        per_position = jnp.concatenate([behaviours, behaviours * candidate[:, None, :]], axis=-1)
        hidden = (
            per_position @ jnp.concatenate([kernel_h + kernel_d, kernel_p], axis=0)
            + (candidate @ (kernel_c - kernel_d) + first.bias[...])[:, None, :]
        )  # [B, S, H1]
        return self.mlp.continue_from_first_layer(hidden, valid[:, :, None])[..., 0]

    @staticmethod
    def flops_per_position(width: int, hidden: Sequence[int]) -> int:
        """FLOPs of the unit for one position in the concatenated form of the paper."""
        return feed_forward_flops(4 * width, (*hidden, 1))


class BilinearAttention(nnx.Module):
    """DIEN's attention (Zhou et al., AAAI 2019, eq. 5): the score of hidden state h_t for the
    candidate c is h_t W c, W in R^{H x E}.

    Input  states [B, S, H], candidate [B, E].
    Output scores [B, S] (raw; `masked_softmax` normalizes them over the valid positions).

    W c is computed once per sample, then one dot product per position.

    Example:
        >>> attention = BilinearAttention(64, 64, rngs=nnx.Rngs(0))
        >>> attention(jnp.ones((4, 100, 64)), jnp.ones((4, 64))).shape
        (4, 100)
    """

    def __init__(self, hidden: int, width: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(nnx.initializers.glorot_normal()(rngs.params(), (hidden, width)))

    def __call__(self, states: jax.Array, candidate: jax.Array) -> jax.Array:
        query = candidate @ self.kernel[...].T  # [B, H]
        return jnp.einsum("bsh,bh->bs", states, query)

    @staticmethod
    def flops(hidden: int, width: int, sequence_length: int) -> int:
        return 2 * hidden * width + 2 * hidden * sequence_length


def masked_softmax(scores: jax.Array, valid: jax.Array) -> jax.Array:
    """[B, S] softmax of `scores` over the positions where `valid` is True; zeros elsewhere, and
    all zeros for a sample with no valid position (an empty sequence)."""
    largest = jnp.max(jnp.where(valid, scores, -jnp.inf), axis=1, keepdims=True)
    largest = jnp.where(jnp.isfinite(largest), largest, 0.0)
    exponentials = jnp.where(valid, jnp.exp(scores - largest), 0.0)
    total = jnp.sum(exponentials, axis=1, keepdims=True)
    return exponentials / jnp.where(total > 0, total, 1.0)


def attention_weights(scores: jax.Array, valid: jax.Array, *, softmax: bool) -> jax.Array:
    """[B, S] weights: the scores at valid positions and zero at padding, normalized by
    `masked_softmax` when `softmax` is set."""
    return masked_softmax(scores, valid) if softmax else jnp.where(valid, scores, 0.0)


def weighted_sum(weights: jax.Array, values: jax.Array) -> jax.Array:
    """[B, S] weights and [B, S, E] values -> [B, E], sum_s weights[s] * values[s]."""
    return jnp.einsum("bs,bse->be", weights, values)
