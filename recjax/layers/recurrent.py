"""Recurrent layers of DIEN: a GRU masked by length, and the GRU with attentional update gate.

Shapes: `B` batch, `S` sequence positions, `E` input width, `H` hidden width.

The gates, in the notation of the DIEN paper (Zhou et al., AAAI 2019, eqs. 1-4), with i_t the
input at step t and h the previous state:

    r_t  = sigmoid(W^r i_t + b^r + U^r h + c^r)             reset gate
    u_t  = sigmoid(W^u i_t + b^u + U^u h + c^u)             update gate
    h~_t = tanh(W^h i_t + b^h + r_t * (U^h h + c^h))        candidate state
    h_t  = (1 - u_t) * h + u_t * h~_t

The paper has one bias per gate; the recurrent biases c (PyTorch's `bias_hh`, cuDNN's layout) are
kept too, so that PyTorch's `nn.GRU` and deepctr-torch's cells load exactly (c = 0 is the paper's
GRU). PyTorch's `nn.GRU` names the gate z = 1 - u ("keep the old state"); its weights load into
these with the z rows negated (sigmoid(-x) = 1 - sigmoid(x)). The AUGRU (eq. 6) scales the update
gate by the attention score a_t of the step: u'_t = a_t * u_t, h_t = (1 - u'_t) * h + u'_t * h~_t.

Masking: a sample's steps at or past its length leave the state unchanged, so the final state is
the one at position length - 1 (zeros, the initial state, for an empty sequence), and the
outputs there are zeros. The input projections of all steps are one matrix multiply before the
recurrence; the recurrence itself is a `lax.scan` over the S steps (under `jax.disable_jit`, a
Python loop, op by op), the same program for every length: shorter sequences are masked, never
recompiled.

Parameters: input_kernel [E, 3H] and hidden_kernel [H, 3H], their columns the gates r | u | h~,
and biases input_bias, hidden_bias [3H]; all uniform in +-1/sqrt(H), as PyTorch initializes a GRU.
"""

import jax
import jax.numpy as jnp
from flax import nnx


def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def gru_step(
    state: jax.Array,
    projected: jax.Array,
    hidden_kernel: jax.Array,
    hidden_bias: jax.Array,
    score: jax.Array | None = None,
) -> jax.Array:
    """One step of the module docstring's equations.

    Args:
      state: [B, H], the previous state h.
      projected: [B, 3H], W i_t + b (the r | u | h~ columns).
      hidden_kernel: [H, 3H], U; hidden_bias: [3H], c.
      score: [B], the attention score a_t of an AUGRU step, or None for a GRU step.

    Returns the new state [B, H].
    """
    recurrent = state @ hidden_kernel + hidden_bias
    input_r, input_u, input_h = jnp.split(projected, 3, axis=-1)
    hidden_r, hidden_u, hidden_h = jnp.split(recurrent, 3, axis=-1)
    reset = jax.nn.sigmoid(input_r + hidden_r)
    update = jax.nn.sigmoid(input_u + hidden_u)
    candidate = jnp.tanh(input_h + reset * hidden_h)
    if score is not None:
        update = score[:, None] * update
    return (1.0 - update) * state + update * candidate


def valid_positions(lengths: jax.Array, sequence_length: int) -> jax.Array:
    """[B, S] bool: position s of sample b is within its length."""
    return jnp.arange(sequence_length, dtype=jnp.int32)[None, :] < lengths[:, None]


class GRU(nnx.Module):
    """A GRU over a padded sequence, masked by length (DIEN's interest extractor).

    Input  inputs [B, S, E] float32, lengths [B] int32 in [0, S].
    Output (outputs [B, S, H], the state after each step, zeros at and past the length;
            final [B, H], the state at position length - 1, zeros for an empty sequence).

    Example:
        >>> gru = GRU(64, 64, rngs=nnx.Rngs(0))
        >>> outputs, final = gru(jnp.ones((4, 100, 64)), jnp.asarray([0, 1, 50, 100]))
        >>> outputs.shape, final.shape
        ((4, 100, 64), (4, 64))
    """

    def __init__(self, in_features: int, hidden: int, *, unroll: int = 1, rngs: nnx.Rngs):
        if in_features <= 0 or hidden <= 0 or unroll <= 0:
            raise ValueError(
                f"{type(self).__name__} needs positive in_features, hidden and unroll; got "
                f"{in_features}, {hidden}, {unroll}."
            )
        bound = 1.0 / hidden**0.5
        self.hidden = hidden
        self.unroll = unroll
        self.input_kernel = nnx.Param(_uniform(rngs.params(), (in_features, 3 * hidden), bound))
        self.hidden_kernel = nnx.Param(_uniform(rngs.params(), (hidden, 3 * hidden), bound))
        self.input_bias = nnx.Param(_uniform(rngs.params(), (3 * hidden,), bound))
        self.hidden_bias = nnx.Param(_uniform(rngs.params(), (3 * hidden,), bound))

    def project_inputs(self, inputs: jax.Array) -> jax.Array:
        """[B, S, E] -> [S, B, 3H]: W i_t + b of every step at once, time-major for the scan."""
        projected = inputs @ self.input_kernel[...] + self.input_bias[...]
        return jnp.swapaxes(projected, 0, 1)

    def __call__(self, inputs: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        batch, sequence_length, _ = inputs.shape
        valid = valid_positions(lengths, sequence_length).T[:, :, None]  # [S, B, 1]
        hidden_kernel, hidden_bias = self.hidden_kernel[...], self.hidden_bias[...]

        def advance(state, step_inputs):
            projected, is_valid = step_inputs
            new_state = gru_step(state, projected, hidden_kernel, hidden_bias)
            return jnp.where(is_valid, new_state, state), jnp.where(is_valid, new_state, 0.0)

        initial = jnp.zeros((batch, self.hidden), inputs.dtype)
        final, outputs = jax.lax.scan(
            advance, initial, (self.project_inputs(inputs), valid), unroll=self.unroll
        )
        return jnp.swapaxes(outputs, 0, 1), final


class AUGRU(GRU):
    """The GRU with attentional update gate (DIEN's interest evolution), masked by length.

    Input  inputs [B, S, E] float32, scores [B, S] float32 (the attention of each step),
           lengths [B] int32 in [0, S].
    Output final [B, H]: the state at position length - 1, zeros for an empty sequence.

    Example:
        >>> augru = AUGRU(64, 64, rngs=nnx.Rngs(0))
        >>> augru(jnp.ones((4, 100, 64)), jnp.full((4, 100), 0.01), jnp.asarray([0, 1, 50, 100]))
        ... .shape
        (4, 64)
    """

    def __call__(  # type: ignore[override]
        self, inputs: jax.Array, scores: jax.Array, lengths: jax.Array
    ) -> jax.Array:
        batch, sequence_length, _ = inputs.shape
        valid = valid_positions(lengths, sequence_length).T[:, :, None]  # [S, B, 1]
        hidden_kernel, hidden_bias = self.hidden_kernel[...], self.hidden_bias[...]

        def advance(state, step_inputs):
            projected, score, is_valid = step_inputs
            new_state = gru_step(state, projected, hidden_kernel, hidden_bias, score)
            return jnp.where(is_valid, new_state, state), None

        initial = jnp.zeros((batch, self.hidden), inputs.dtype)
        final, _ = jax.lax.scan(
            advance,
            initial,
            (self.project_inputs(inputs), scores.T, valid),
            unroll=self.unroll,
        )
        return final


def gru_flops(in_features: int, hidden: int) -> int:
    """Multiply-add FLOPs of one GRU or AUGRU step for one sample (input and recurrent)."""
    return 2 * 3 * hidden * (in_features + hidden)
