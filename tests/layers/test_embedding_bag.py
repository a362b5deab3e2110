import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax import native
from recjax.layers.embedding_bag import LOWERINGS, lookup_sequence, resolve_lowering
from recjax.layers.quantization import RowFormat
from tests.layers.quantized_rows import numpy_decode, numpy_encode, row_magnitudes

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


# --- stored row formats: float16, bfloat16, int8 and int4 rows, read as float32 and summed ----


def stored_inputs(dtype, dim, batch, capacity, seed, alignment=1):
    """Three tables whose rows span many magnitudes (each row scaled by 10^k, k in [-30, 30]),
    the first rows of each table the edge rows of test_quantization (equal values, extreme and
    tiny ranges), stored in `dtype`."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((sum(ROWS), dim)) * 10.0 ** rng.integers(-30, 31, (sum(ROWS), 1))
    for offset in OFFSETS:
        values[offset : offset + 5] = [
            np.full(dim, 0.375),
            np.full(dim, -7.0e30),
            np.zeros(dim),
            rng.uniform(-1e-30, 1e-30, dim),
            1e6 + rng.uniform(0, 1e-1, dim),
        ]
    if dtype == "float16":  # its range: magnitudes up to 65,504
        values = np.clip(values, -6e4, 6e4)
    stored = numpy_encode(values.astype(np.float32), dtype, alignment)
    _, ids, lengths, weights = random_inputs(batch, capacity, seed)
    return stored, ids, lengths, weights


def numpy_stored_bags(stored, dtype, dim, ids, lengths, weights, mean):
    """NumPy dequantize-then-sum in float64, and a bound on float32 rounding of each output."""
    values = numpy_decode(stored, dtype, dim)
    magnitudes = row_magnitudes(stored, dtype, dim)
    expected = numpy_bags(values, ids, lengths, weights, mean)
    absolute_weights = None if weights is None else np.abs(weights)
    bound = numpy_bags(magnitudes, ids, lengths, absolute_weights, mean)
    return expected, bound * (ids.shape[2] + 4) * 4 * np.finfo(np.float32).eps


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8", "int4"])
@pytest.mark.parametrize("dim", [5, 64])
@pytest.mark.parametrize(
    ("ragged", "weighted", "mean"),
    [(False, False, False), (True, False, False), (True, True, True)],
)
def test_stored_formats_match_numpy_dequantize_then_sum(
    lowering, dtype, dim, ragged, weighted, mean
):
    skip_unless_available(lowering)
    capacity = 7
    stored, ids, lengths, weights = stored_inputs(dtype, dim, 5, capacity, seed=dim)
    lengths = lengths if ragged else None
    weights = weights if weighted else None
    row_format = RowFormat(dtype, dim)

    def pool(stored, ids, lengths, weights):
        return LOWERINGS[lowering](
            stored, ids, lengths, weights, row_offsets=OFFSETS, mean=mean, row_format=row_format
        )

    got = np.asarray(jax.jit(pool)(stored, ids, lengths, weights))
    expected, tolerance = numpy_stored_bags(stored, dtype, dim, ids, lengths, weights, mean)
    assert got.shape == (5, len(ROWS), dim) and got.dtype == np.float32
    assert np.all(np.abs(got - expected) <= tolerance), np.max(np.abs(got - expected) - tolerance)


@pytest.mark.parametrize(
    ("lowering", "dim"),
    [("native", dim) for dim in (1, 3, 16, 32, 64, 128, 200)]
    + [(lowering, 3) for lowering in sorted(set(LOWERINGS) - {"native"})],
)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8", "int4"])
def test_each_row_alone_pools_to_its_value(lowering, dtype, dim):
    """Bags of one id read every row by itself: equal-valued rows exactly, tiny and huge ones
    within float32 rounding of their own magnitude (every fixed-dim and generic kernel path)."""
    skip_unless_available(lowering)
    stored, _, _, _ = stored_inputs(dtype, dim, 1, 1, seed=dim + 1)
    ids = np.stack([np.arange(rows) % rows for rows in ROWS[:1]], 1)[:, :, None].astype(np.int32)
    row_format = RowFormat(dtype, dim)
    got = jax.jit(
        lambda s, i: LOWERINGS[lowering](
            s, i, None, None, row_offsets=(0,), mean=False, row_format=row_format
        )
    )(stored, ids)
    values = numpy_decode(stored[: ROWS[0]], dtype, dim)
    magnitude = row_magnitudes(stored[: ROWS[0]], dtype, dim)
    got = np.asarray(got)[:, 0]
    assert np.all(np.abs(got - values) <= 2 * np.finfo(np.float32).eps * magnitude)
    np.testing.assert_array_equal(got[[0, 1, 2]], values[[0, 1, 2]])  # equal values: exact


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
@pytest.mark.parametrize("dtype", ["float16", "int8", "int4"])
@pytest.mark.parametrize("dim", [5, 32])
def test_padded_rows_pool_as_packed_ones(lowering, dtype, dim):
    skip_unless_available(lowering)
    stored, ids, lengths, weights = stored_inputs(dtype, dim, 4, 6, seed=dim, alignment=64)
    assert stored.shape[1] * stored.dtype.itemsize % 64 == 0
    row_format = RowFormat(dtype, dim, alignment=64)
    got = jax.jit(
        lambda s, i, n, w: LOWERINGS[lowering](
            s, i, n, w, row_offsets=OFFSETS, mean=True, row_format=row_format
        )
    )(stored, ids, lengths, weights)
    expected, tolerance = numpy_stored_bags(stored, dtype, dim, ids, lengths, weights, True)
    assert np.all(np.abs(np.asarray(got) - expected) <= tolerance)


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
def test_quantized_ids_out_of_range_are_clamped(lowering):
    skip_unless_available(lowering)
    values = np.arange(40, dtype=np.float32).reshape(10, 4)
    stored = numpy_encode(values, "int8")
    ids = jnp.asarray([[[-3, 9, 10_000_000]]], jnp.int32)
    got = jax.jit(
        lambda s, i: LOWERINGS[lowering](
            s, i, None, None, row_offsets=(0,), mean=False, row_format=RowFormat("int8", 4)
        )
    )(stored, ids)
    decoded = numpy_decode(stored, "int8", 4)
    np.testing.assert_allclose(got[0, 0], decoded[0] + 2 * decoded[9], rtol=1e-6)


def test_sequence_lookup_reads_stored_rows_as_float32():
    values = np.random.default_rng(3).standard_normal((15, 6)).astype(np.float32)
    stored = numpy_encode(values, "int4")
    ids = np.asarray([[1, 2, 3], [4, 0, 0]], np.int32)
    lengths = np.asarray([3, 1], np.int32)
    got = jax.jit(lookup_sequence, static_argnums=(3, 4))(
        stored, ids, lengths, 5, RowFormat("int4", 6)
    )
    decoded = numpy_decode(stored, "int4", 6)
    np.testing.assert_allclose(got[0], decoded[[6, 7, 8]], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(got)[1, 1:], 0)
    assert got.dtype == np.float32


@pytest.mark.parametrize(("dtype", "dim"), [("float32", 8), ("int8", 16)])
def test_native_kernel_refuses_a_buffer_that_does_not_match_its_dtype(dtype, dim):
    """uint8 rows read as float32, or rows too narrow for their dim (16 bytes for 16 + 8)."""
    skip_unless_available("native")
    stored = numpy_encode(np.ones((4, 8), np.float32), "int8")
    with pytest.raises(Exception, match="element type or row width does not match"):
        native.sparse_lengths_sum(
            stored,
            np.zeros((1, 1, 1), np.int32),
            None,
            None,
            row_offsets=(0,),
            mean=False,
            dtype=dtype,
            dim=dim,
        ).block_until_ready()
