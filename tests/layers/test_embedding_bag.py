import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax import native
from recjax.layers.embedding_bag import LOWERINGS, lookup_sequence, resolve_lowering

ROWS = (50, 7, 300)  # three tables stacked in one [357, 8] buffer
OFFSETS = (0, 50, 57)


def numpy_bags(stacked, ids, lengths, weights, mean):
    """One loop per bag: pooled[b, t] = sum_{l < length} w * table_t[ids[b, t, l]] (/ length)."""
    batch, num_bags, capacity = ids.shape
    out = np.zeros((batch, num_bags, stacked.shape[1]), np.float64)
    for b in range(batch):
        for t in range(num_bags):
            length = capacity if lengths is None else lengths[b, t]
            for position in range(length):
                weight = 1.0 if weights is None else weights[b, t, position]
                out[b, t] += weight * stacked[OFFSETS[t] + ids[b, t, position]]
            if mean and length > 0:
                out[b, t] /= length
    return out


def skip_unless_available(lowering):
    available, detail = native.availability()
    if lowering == "native" and not available:
        pytest.skip(f"native library unavailable: {detail}")


def random_inputs(batch, capacity, seed):
    rng = np.random.default_rng(seed)
    stacked = rng.standard_normal((sum(ROWS), 8)).astype(np.float32)
    ids = np.stack([rng.integers(0, rows, (batch, capacity)) for rows in ROWS], 1).astype(np.int32)
    lengths = rng.integers(0, capacity + 1, (batch, len(ROWS))).astype(np.int32)
    lengths[0, 1] = 0  # an empty bag pools to zeros
    weights = rng.random((batch, len(ROWS), capacity)).astype(np.float32)
    return stacked, ids, lengths, weights


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
@pytest.mark.parametrize("capacity", [1, 5, 9])
@pytest.mark.parametrize(
    ("ragged", "weighted", "mean"),
    [
        (False, False, False),
        (True, False, False),
        (True, True, False),
        (True, False, True),
        (False, True, True),
    ],
)
def test_lowering_matches_numpy(lowering, capacity, ragged, weighted, mean):
    skip_unless_available(lowering)
    stacked, ids, lengths, weights = random_inputs(6, capacity, seed=capacity)
    lengths = lengths if ragged else None
    weights = weights if weighted else None

    def pool(stacked, ids, lengths, weights):
        return LOWERINGS[lowering](stacked, ids, lengths, weights, row_offsets=OFFSETS, mean=mean)

    got = jax.jit(pool)(stacked, ids, lengths, weights)
    expected = numpy_bags(stacked, ids, lengths, weights, mean)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
def test_out_of_range_ids_are_clamped_not_read_out_of_bounds(lowering):
    skip_unless_available(lowering)
    stacked = jnp.arange(40, dtype=jnp.float32).reshape(10, 4)
    ids = jnp.asarray([[[-3, 9, 10_000_000]]], jnp.int32)  # [B=1, T=1, C=3], offset 0
    got = jax.jit(lambda s, i: LOWERINGS[lowering](s, i, None, None, row_offsets=(0,), mean=False))(
        stacked, ids
    )
    np.testing.assert_array_equal(got[0, 0], np.asarray(stacked[0] + stacked[9] + stacked[9]))


def test_sequence_lookup_keeps_rows_and_zeros_padding():
    stacked = np.arange(60, dtype=np.float32).reshape(15, 4)
    ids = np.asarray([[1, 2, 3], [4, 0, 0]], np.int32)
    lengths = np.asarray([3, 1], np.int32)
    got = np.asarray(jax.jit(lookup_sequence, static_argnums=3)(stacked, ids, lengths, 5))
    np.testing.assert_array_equal(got[0], stacked[[6, 7, 8]])
    np.testing.assert_array_equal(got[1, 0], stacked[9])
    np.testing.assert_array_equal(got[1, 1:], 0)


def test_auto_resolves_to_native_when_built():
    available, detail = native.availability()
    assert resolve_lowering("auto")[0] == ("native" if available else "pooling_loop"), detail


def test_auto_falls_back_to_pure_jax_and_says_why(monkeypatch):
    monkeypatch.setattr(native, "availability", lambda: (False, "no compiler"))
    lowering, note = resolve_lowering("auto")
    assert lowering == "pooling_loop"
    assert "unavailable: no compiler" in note
    with pytest.raises(RuntimeError, match="native embedding-bag lowering is unavailable"):
        resolve_lowering("native")
    with pytest.raises(ValueError, match="'fastest'.*auto.*gather_sum"):
        resolve_lowering("fastest")
