"""The masked GRU and the AUGRU against NumPy, step by step and over padded sequences; the GRU
against PyTorch's nn.GRU where torch is installed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recjax.layers.recurrent import (
    AUGRU,
    GRU,
    gru_step,
    length_sorted_blocks,
    scan_recurrences,
    while_loop_recurrences,
)
from tests.models import sequence_reference as reference

LENGTHS = np.asarray([0, 1, 4, 7, 3])


def inputs(seed, shape=(5, 7, 6)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_one_gru_step_and_one_augru_step_match_the_equations():
    gru = GRU(6, 4, rngs=nnx.Rngs(0))
    p = reference.parameters(gru)
    state, x = inputs(1, (3, 4)), inputs(2, (3, 6))
    projected = x @ np.asarray(gru.input_kernel[...]) + np.asarray(gru.input_bias[...])
    projected = tuple(jnp.asarray(gate) for gate in np.split(projected, 3, axis=-1))
    kernel, bias = gru.hidden_kernel[...], gru.hidden_bias[...]
    score = np.asarray([0.0, 0.3, 1.0], np.float32)
    for a in (None, score):
        got = gru_step(jnp.asarray(state), projected, kernel, bias, a)
        expected = [
            reference.gru_step(state[b], x[b], p, (), None if a is None else a[b]) for b in range(3)
        ]
        np.testing.assert_allclose(got, np.stack(expected), rtol=1e-5, atol=1e-6)
    # A zero score freezes the state; a score of one is the GRU step.
    frozen = gru_step(jnp.asarray(state), projected, kernel, bias, jnp.zeros(3))
    np.testing.assert_allclose(frozen, state)


LOOPS_TESTED = [
    ("longest", 1, None),
    ("longest", 3, None),
    ("longest", 1, 2),  # blocks of 2, 2 and 1 samples sorted by length, each its own loop
    ("scan", 2, 2),  # (a scan ignores block_size)
]


@pytest.mark.parametrize(("loop", "unroll", "block_size"), LOOPS_TESTED)
def test_the_masked_gru_matches_the_reference_over_each_valid_prefix(loop, unroll, block_size):
    gru = GRU(6, 4, loop=loop, unroll=unroll, block_size=block_size, rngs=nnx.Rngs(1))
    p = reference.parameters(gru)
    x = inputs(3)
    outputs, final = jax.jit(lambda g, x, n: g(x, n))(gru, x, LENGTHS)
    assert outputs.shape == (5, 7, 4) and final.shape == (5, 4)
    for b, length in enumerate(LENGTHS):
        states = reference.gru_sequence(x[b, :length], p, (), 4)
        np.testing.assert_allclose(outputs[b, :length], states, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(outputs[b, length:], 0.0)
        expected_final = states[-1] if length else np.zeros(4)
        np.testing.assert_allclose(final[b], expected_final, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("loop", "unroll", "block_size"), LOOPS_TESTED)
def test_the_augru_matches_the_reference_and_ignores_padding(loop, unroll, block_size):
    augru = AUGRU(6, 4, loop=loop, unroll=unroll, block_size=block_size, rngs=nnx.Rngs(2))
    p = reference.parameters(augru)
    x, scores = inputs(4), np.random.default_rng(5).uniform(size=(5, 7)).astype(np.float32)
    final = np.asarray(jax.jit(lambda g, x, a, n: g(x, a, n))(augru, x, scores, LENGTHS))
    for b, length in enumerate(LENGTHS):
        states = reference.gru_sequence(x[b, :length], p, (), 4, scores[b, :length])
        np.testing.assert_allclose(final[b], states[-1] if length else 0.0, rtol=1e-5, atol=1e-6)
    noisy_x, noisy_scores = x.copy(), scores.copy()
    for b, length in enumerate(LENGTHS):
        noisy_x[b, length:], noisy_scores[b, length:] = 9.0, 0.7
    np.testing.assert_array_equal(augru(noisy_x, noisy_scores, LENGTHS), augru(x, scores, LENGTHS))


def test_the_gru_equals_torch_nn_gru_with_the_update_rows_negated():
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    gru = GRU(6, 4, rngs=nnx.Rngs(3))
    x = inputs(6)
    torch_gru = torch.nn.GRU(6, 4, batch_first=True)
    flip = np.concatenate([np.ones(4), -np.ones(4), np.ones(4)]).astype(np.float32)  # u = 1 - z
    with torch.no_grad():
        torch_gru.weight_ih_l0.copy_(
            torch.from_numpy(np.asarray(gru.input_kernel[...]).T * flip[:, None])
        )
        torch_gru.weight_hh_l0.copy_(
            torch.from_numpy(np.asarray(gru.hidden_kernel[...]).T * flip[:, None])
        )
        torch_gru.bias_ih_l0.copy_(torch.from_numpy(np.asarray(gru.input_bias[...]) * flip))
        torch_gru.bias_hh_l0.copy_(torch.from_numpy(np.asarray(gru.hidden_bias[...]) * flip))
        nonempty = LENGTHS > 0
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.from_numpy(x[nonempty]),
            torch.from_numpy(LENGTHS[nonempty]),
            batch_first=True,
            enforce_sorted=False,
        )
        out, last = torch_gru(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=7)
    outputs, final = gru(x, LENGTHS)
    np.testing.assert_allclose(np.asarray(outputs)[nonempty], out.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(final)[nonempty], last[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("unroll", [1, 4])
def test_the_longest_loop_takes_as_many_steps_as_the_longest_sequence(unroll):
    """The while loop's trip count is max(lengths), read at run time: one program for every
    length. Counted here under disable_jit, where each step calls the cell once."""
    gru = GRU(6, 4, unroll=unroll, rngs=nnx.Rngs(4))
    x = inputs(7)
    calls = []

    def counting_step(*args, **kwargs):
        calls.append(1)
        return gru_step(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, jax.disable_jit():
        patch.setattr("recjax.layers.recurrent.gru_step", counting_step)
        for lengths, expected in (([0, 0, 0, 0, 0], 0), ([2, 0, 1, 2, 1], 2), (LENGTHS, 7)):
            calls.clear()
            gru(x, np.asarray(lengths))
            assert len(calls) == -(-expected // unroll) * unroll  # whole iterations of `unroll`


class _TwoRecurrences(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.gru = GRU(6, 4, rngs=rngs)  # "longest"
        self.augru = AUGRU(4, 4, loop="scan", rngs=rngs)


def test_scan_recurrences_views_the_same_arrays_looping_by_scan_with_the_same_outputs():
    """What training relies on (recjax.train.step): the view differs in its loop only."""
    model = _TwoRecurrences(nnx.Rngs(3))
    view = scan_recurrences(model)
    assert while_loop_recurrences(model) == ["gru"] and while_loop_recurrences(view) == []
    assert (view.gru.loop, view.augru.loop, model.gru.loop) == ("scan", "scan", "longest")
    assert view.gru.hidden_kernel[...] is model.gru.hidden_kernel[...]
    x = inputs(6)
    run = jax.jit(lambda gru, x, n: gru(x, n))
    for longest, scanned in zip(run(model.gru, x, LENGTHS), run(view.gru, x, LENGTHS), strict=True):
        np.testing.assert_allclose(scanned, longest, rtol=1e-6, atol=1e-7)


def test_length_sorted_blocks_cover_the_batch_in_near_equal_blocks():
    assert length_sorted_blocks(5, 2) == [(0, 2), (2, 3), (3, 5)]
    assert length_sorted_blocks(1024, 32) == [(k * 32, k * 32 + 32) for k in range(32)]
    assert length_sorted_blocks(16, 32) == [(0, 16)]
    sizes = [stop - start for start, stop in length_sorted_blocks(100, 32)]
    assert sizes == [25, 25, 25, 25]
