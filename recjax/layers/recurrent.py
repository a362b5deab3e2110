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
recurrence, kept as three time-major arrays, one per gate: a loop step that read the three gates
as column slices of one [B, 3H] step was 3.6x slower on XLA:CPU (jaxlib 0.10.2; its fused
elementwise code for several slices of one dynamic slice is not vectorized), while slicing the
recurrent product U h, an ordinary buffer, costs nothing. The recurrence is one program for
every length (shorter sequences are masked, never recompiled), in one of two loops (`LOOPS`, see
`masked_recurrence`):

    "longest"  a `lax.while_loop` that stops after the batch's longest sequence: max(lengths)
               steps, a run-time trip count (a batch of short histories takes few steps)
    "scan"     a `lax.scan` over all S steps

Under `jax.disable_jit` either runs as a Python loop, op by op. Training differentiates the
"scan" form whatever the module's loop (`scan_recurrences`): reverse mode cannot differentiate a
while loop whose trip count is known only at run time, and both loops compute the same function.

Parameters: input_kernel [E, 3H] and hidden_kernel [H, 3H], their columns the gates r | u | h~,
and biases input_bias, hidden_bias [3H]; all uniform in +-1/sqrt(H), as PyTorch initializes a GRU.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


GateInputs = tuple[jax.Array, jax.Array, jax.Array]


def gru_step(
    state: jax.Array,
    projected: GateInputs,
    hidden_kernel: jax.Array,
    hidden_bias: jax.Array,
    score: jax.Array | None = None,
) -> jax.Array:
    """One step of the module docstring's equations.

    Args:
      state: [B, H], the previous state h.
      projected: (W^r i_t + b^r, W^u i_t + b^u, W^h i_t + b^h), each [B, H].
      hidden_kernel: [H, 3H], U; hidden_bias: [3H], c.
      score: [B], the attention score a_t of an AUGRU step, or None for a GRU step.

    Returns the new state [B, H].
    """
    recurrent = state @ hidden_kernel + hidden_bias
    input_r, input_u, input_h = projected
    hidden_r, hidden_u, hidden_h = jnp.split(recurrent, 3, axis=-1)
    reset = jax.nn.sigmoid(input_r + hidden_r)
    update = jax.nn.sigmoid(input_u + hidden_u)
    candidate = jnp.tanh(input_h + reset * hidden_h)
    if score is not None:
        update = score[:, None] * update
    return (1.0 - update) * state + update * candidate


LOOPS = ("longest", "scan")


def masked_recurrence(
    step,
    inputs,
    valid: jax.Array,
    initial: jax.Array,
    *,
    loop: str,
    unroll: int,
    keep_outputs: bool,
) -> tuple[jax.Array, jax.Array | None]:
    """Runs `state = step(state, inputs[t])` over time, where `valid[t]`, else keeps the state.

    Args:
      step: (state [B, H], the inputs of one step) -> the new state [B, H].
      inputs: a pytree of time-major arrays [S, B, ...].
      valid: [S, B, 1] bool, position t of sample b is within its length.
      initial: [B, H], the state before the first step.
      loop: "longest" (stop after the last step any sample needs) or "scan" (all S steps).
      unroll: steps per loop iteration.
      keep_outputs: also return each step's state, zeros where not valid.

    Returns (the final state [B, H], the outputs [S, B, H] or None).
    """
    if loop == "scan":

        def advance(state, step_inputs):
            xs, is_valid = step_inputs
            new_state = step(state, xs)
            output = jnp.where(is_valid, new_state, 0.0) if keep_outputs else None
            return jnp.where(is_valid, new_state, state), output

        return jax.lax.scan(advance, initial, (inputs, valid), unroll=unroll)
    if loop != "longest":
        raise ValueError(f"Unknown recurrence loop {loop!r}; expected one of {LOOPS}.")
    steps = valid.shape[0]
    last = jnp.max(jnp.sum(valid, axis=0, dtype=jnp.int32))  # the longest length of the batch
    outputs = jnp.zeros((steps, *initial.shape), initial.dtype) if keep_outputs else None

    def body(carry):
        t, state, outputs = carry
        for offset in range(unroll):  # positions past S (t + offset >= S) are masked out
            index = jnp.minimum(t + offset, steps - 1)
            xs = jax.tree.map(
                lambda a, i=index: jax.lax.dynamic_index_in_dim(a, i, 0, False), inputs
            )
            is_valid = jax.lax.dynamic_index_in_dim(valid, index, 0, False) & (t + offset < steps)
            new_state = step(state, xs)
            if keep_outputs:
                current = jax.lax.dynamic_index_in_dim(outputs, index, 0, False)
                output = jnp.where(is_valid, new_state, current)
                outputs = jax.lax.dynamic_update_index_in_dim(outputs, output, index, 0)
            state = jnp.where(is_valid, new_state, state)
        return t + unroll, state, outputs

    _, final, outputs = jax.lax.while_loop(
        lambda carry: carry[0] < last, body, (jnp.int32(0), initial, outputs)
    )
    return final, outputs


def valid_positions(lengths: jax.Array, sequence_length: int) -> jax.Array:
    """[B, S] bool: position s of sample b is within its length."""
    return jnp.arange(sequence_length, dtype=jnp.int32)[None, :] < lengths[:, None]


def length_sorted_blocks(batch_size: int, block_size: int) -> list[tuple[int, int]]:
    """[(start, stop)] of near-equal blocks of at most `block_size` samples (static)."""
    blocks = -(-batch_size // block_size)
    edges = np.linspace(0, batch_size, blocks + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


class GRU(nnx.Module):
    """A GRU over a padded sequence, masked by length (DIEN's interest extractor).

    Input  inputs [B, S, E] float32, lengths [B] int32 in [0, S].
    Output (outputs [B, S, H], the state after each step, zeros at and past the length;
            final [B, H], the state at position length - 1, zeros for an empty sequence).

    `block_size` (with the "longest" loop, for batches larger than it) sorts the batch by length
    and runs each block of at most that many samples as its own loop, which stops after the
    block's longest sequence, projecting each step's inputs inside the loop: the work follows the
    lengths, as a packed sequence's does (about 0.4 of the padded work with 4 blocks of
    long-tailed lengths), at the price of smaller products per step and one compiled loop per
    block. None: one loop. The results are the same.

    Example:
        >>> gru = GRU(64, 64, rngs=nnx.Rngs(0))
        >>> outputs, final = gru(jnp.ones((4, 100, 64)), jnp.asarray([0, 1, 50, 100]))
        >>> outputs.shape, final.shape
        ((4, 100, 64), (4, 64))
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        *,
        loop: str = "longest",
        unroll: int = 1,
        block_size: int | None = None,
        rngs: nnx.Rngs,
    ):
        if min(in_features, hidden, unroll, block_size or 1) <= 0 or loop not in LOOPS:
            raise ValueError(
                f"{type(self).__name__} needs positive in_features, hidden, unroll and block_size "
                f"(or None) and a loop in {LOOPS}; got {in_features}, {hidden}, {unroll}, "
                f"{block_size}, {loop!r}."
            )
        bound = 1.0 / hidden**0.5
        self.hidden = hidden
        self.loop = loop
        self.unroll = unroll
        self.block_size = block_size
        self.input_kernel = nnx.Param(_uniform(rngs.params(), (in_features, 3 * hidden), bound))
        self.hidden_kernel = nnx.Param(_uniform(rngs.params(), (hidden, 3 * hidden), bound))
        self.input_bias = nnx.Param(_uniform(rngs.params(), (3 * hidden,), bound))
        self.hidden_bias = nnx.Param(_uniform(rngs.params(), (3 * hidden,), bound))

    def project_inputs(self, inputs: jax.Array) -> GateInputs:
        """[B, S, E] -> W i_t + b of every step at once, time-major for the loop: one [S, B, H]
        array per gate (r, u, h~)."""
        time_major = jnp.swapaxes(inputs, 0, 1)  # [S, B, E]
        kernels = jnp.split(self.input_kernel[...], 3, axis=-1)
        biases = jnp.split(self.input_bias[...], 3)
        return tuple(time_major @ k + b for k, b in zip(kernels, biases, strict=True))

    def _project_step(self, inputs: jax.Array) -> GateInputs:
        """[b, E] inputs of one step -> its three gate projections [b, H]."""
        projected = inputs @ self.input_kernel[...] + self.input_bias[...]
        return tuple(jnp.split(projected, 3, axis=-1))

    def _run_block(self, inputs, lengths, scores, loop: str, keep_outputs: bool, in_loop: bool):
        """(outputs [b, S, H] or None, final [b, H]) of samples [b, S, E] with lengths [b] and
        AUGRU scores [b, S] (None for a GRU); `in_loop`: project each step inside the loop."""
        batch, sequence_length, _ = inputs.shape
        valid = valid_positions(lengths, sequence_length).T[:, :, None]  # [S, b, 1]
        hidden_kernel, hidden_bias = self.hidden_kernel[...], self.hidden_bias[...]
        if in_loop:  # each step's [b, E] inputs, projected in the loop
            per_step, project = jnp.swapaxes(inputs, 0, 1), self._project_step
        else:  # each step's three gate projections, all made before the loop
            per_step, project = self.project_inputs(inputs), lambda projected: projected

        def step(state, xs):
            if scores is None:
                return gru_step(state, project(xs), hidden_kernel, hidden_bias)
            return gru_step(state, project(xs[0]), hidden_kernel, hidden_bias, score=xs[1])

        final, outputs = masked_recurrence(
            step,
            per_step if scores is None else (per_step, scores.T),
            valid,
            jnp.zeros((batch, self.hidden), inputs.dtype),
            loop=loop,
            unroll=self.unroll,
            keep_outputs=keep_outputs,
        )
        return (None if outputs is None else jnp.swapaxes(outputs, 0, 1)), final

    def _run(self, inputs, lengths, scores, loop: str | None, keep_outputs: bool):
        """The whole batch, in length-sorted blocks where `block_size` is set, smaller than the
        batch, and the loop is "longest" (a scan takes every step whatever the lengths)."""
        loop = loop or self.loop
        batch_size = inputs.shape[0]
        blocks = length_sorted_blocks(batch_size, self.block_size or batch_size)
        if loop != "longest" or len(blocks) == 1:
            return self._run_block(inputs, lengths, scores, loop, keep_outputs, in_loop=False)
        order = jnp.argsort(-lengths, stable=True)  # longest first
        inputs, lengths = inputs[order], lengths[order]
        scores = None if scores is None else scores[order]
        results = [
            self._run_block(
                inputs[start:stop],
                lengths[start:stop],
                None if scores is None else scores[start:stop],
                loop,
                keep_outputs,
                in_loop=True,
            )
            for start, stop in blocks
        ]
        inverse = jnp.argsort(order)
        final = jnp.concatenate([final for _, final in results])[inverse]
        if not keep_outputs:
            return None, final
        return jnp.concatenate([outputs for outputs, _ in results])[inverse], final

    def __call__(
        self, inputs: jax.Array, lengths: jax.Array, *, loop: str | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """`loop` overrides the module's (training differentiates, and only "scan" has a
        reverse-mode derivative: a while loop's trip count is not known when tracing)."""
        return self._run(inputs, lengths, None, loop, keep_outputs=True)


class AUGRU(GRU):
    """The GRU with attentional update gate (DIEN's interest evolution), masked by length.

    Input  inputs [B, S, E] float32, scores [B, S] float32 (the attention of each step),
           lengths [B] int32 in [0, S].
    Output final [B, H]: the state at position length - 1, zeros for an empty sequence.

    Example:
        >>> augru = AUGRU(64, 64, rngs=nnx.Rngs(0))
        >>> scores = jnp.full((4, 100), 0.01)
        >>> augru(jnp.ones((4, 100, 64)), scores, jnp.asarray([0, 1, 50, 100])).shape
        (4, 64)
    """

    def __call__(  # type: ignore[override]
        self, inputs: jax.Array, scores: jax.Array, lengths: jax.Array, *, loop: str | None = None
    ) -> jax.Array:
        _, final = self._run(inputs, lengths, scores, loop, keep_outputs=False)
        return final


def while_loop_recurrences(model: nnx.Module) -> list[str]:
    """The paths (e.g. "interest_extractor") of `model`'s GRUs and AUGRUs that loop by "longest"."""
    return [
        "/".join(str(part) for part in path)
        for path, module in nnx.iter_modules(model)
        if isinstance(module, GRU) and module.loop == "longest"
    ]


def scan_recurrences(model: nnx.Module) -> nnx.Module:
    """`model` with every GRU and AUGRU looping by "scan": a new module holding the same arrays.

    For training. Reverse mode cannot differentiate the "longest" loop, a `lax.while_loop` whose
    trip count is known only at run time; a scan over all S steps is differentiable and computes
    the same function (a step at or past a sample's length leaves its state unchanged, and the
    outputs there are zeros), so training this view trains the model itself.
    """
    return nnx.with_attributes(model, only=GRU, raise_if_not_found=False, loop="scan")


def gru_flops(in_features: int, hidden: int) -> int:
    """Multiply-add FLOPs of one GRU or AUGRU step for one sample (input and recurrent)."""
    return 2 * 3 * hidden * (in_features + hidden)
