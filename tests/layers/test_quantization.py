"""Stored row formats against NumPy: bytes, codecs, edge rows, and the bytes a table counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax.inputs.features import TABLE_DTYPES, TableConfig
from recjax.layers.quantization import RowFormat
from tests.layers.quantized_rows import BITS, numpy_decode, numpy_encode

QUANTIZED = ("int8", "int4")


def edge_rows(dim: int) -> np.ndarray:
    """Rows a quantizer gets wrong first: equal values (scale 0), extreme and tiny ranges, a tiny
    range far from zero, mixed signs, one outlier."""
    rng = np.random.default_rng(dim)
    rows = [
        np.full(dim, 0.375),
        np.full(dim, -7.0e30),
        np.zeros(dim),
        rng.uniform(-1e30, 1e30, dim),
        rng.uniform(-1e-30, 1e-30, dim),
        1e6 + rng.uniform(0, 1e-1, dim),
        rng.standard_normal(dim),
        np.where(np.arange(dim) == dim // 2, 1e4, rng.uniform(-1e-3, 1e-3, dim)),
    ]
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("dtype", TABLE_DTYPES)
@pytest.mark.parametrize("dim", [1, 3, 8, 64])
def test_encode_gives_the_bytes_of_the_layout(dtype, dim):
    values = np.random.default_rng(dim).standard_normal((20, dim)).astype(np.float32)
    row_format = RowFormat(dtype, dim)
    stored = np.asarray(jax.jit(row_format.encode)(values))
    expected = numpy_encode(values, dtype)
    assert stored.shape == row_format.shape(20) and stored.dtype == row_format.storage_dtype
    np.testing.assert_array_equal(stored.view(np.uint8), expected.view(np.uint8))
    assert stored.nbytes == 20 * TableConfig("t", 20, dim, dtype).row_bytes


@pytest.mark.parametrize("dtype", QUANTIZED)
@pytest.mark.parametrize("dim", [1, 2, 5, 32])
def test_quantized_error_is_at_most_half_a_step_and_equal_rows_are_exact(dtype, dim):
    values = edge_rows(dim)
    row_format = RowFormat(dtype, dim)
    stored = np.asarray(jax.jit(row_format.encode)(values))
    decoded = np.asarray(jax.jit(row_format.decode)(stored))
    exact = numpy_decode(stored, dtype, dim)
    # decode computes code * scale + bias in float32: within float32 rounding of the exact value.
    magnitude = np.abs(values).astype(np.float64) + 1e-38
    eps = np.finfo(np.float32).eps
    assert np.all(np.abs(decoded - exact) <= 4 * eps * magnitude.max(1)[:, None])
    # the value's own error: half a step (range / levels / 2) and float32 rounding.
    levels = 2 ** BITS[dtype] - 1
    spans = values.max(1).astype(np.float64) - values.min(1)
    bound = spans / levels / 2 + 4 * eps * np.abs(values).max(1)
    assert np.all(np.abs(exact - values).max(1) <= bound)
    # rows of equal values: scale 0, every code 0, the bias is the value.
    for row in (0, 1, 2):
        np.testing.assert_array_equal(decoded[row], values[row])
    assert np.all(stored[:3, : stored.shape[1] - 8] == 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_float_formats_round_to_nearest_and_widen_exactly(dtype):
    values = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
    row_format = RowFormat(dtype, 10)
    stored = row_format.encode(values)
    expected = numpy_encode(values, dtype)
    np.testing.assert_array_equal(
        np.asarray(row_format.decode(stored)), expected.astype(np.float32)
    )


@pytest.mark.parametrize("dtype", TABLE_DTYPES)
@pytest.mark.parametrize("alignment", [16, 64])
def test_padded_rows_hold_the_packed_row_then_zeros(dtype, alignment):
    values = np.random.default_rng(alignment).standard_normal((5, 12)).astype(np.float32)
    row_format = RowFormat(dtype, 12, alignment)
    stored = np.asarray(jax.jit(row_format.encode)(values))
    assert stored.nbytes == 5 * TableConfig("t", 5, 12, dtype, alignment).row_bytes
    assert (stored.shape[1] * stored.dtype.itemsize) % alignment == 0
    packed = numpy_encode(values, dtype)
    np.testing.assert_array_equal(
        stored[:, : packed.shape[1]].view(np.uint8), packed.view(np.uint8)
    )
    assert not np.any(stored[:, packed.shape[1] :].view(np.uint8))
    np.testing.assert_array_equal(
        np.asarray(row_format.decode(stored)), np.asarray(RowFormat(dtype, 12).decode(packed))
    )


def test_int4_packs_low_nibble_first_and_pads_odd_dims():
    values = np.asarray([[0.0, 15.0, 5.0]], np.float32)  # scale 1, bias 0: codes 0, 15, 5
    stored = np.asarray(RowFormat("int4", 3).encode(values))
    assert stored.shape == (1, 2 + 8)
    assert stored[0, 0] == 0xF0 and stored[0, 1] == 0x05
    np.testing.assert_array_equal(stored[0, 2:].view("<f4"), [1.0, 0.0])


def test_row_bytes_count_codes_scale_and_bias():
    assert [TableConfig("t", 10, 64, dtype).row_bytes for dtype in TABLE_DTYPES] == [
        256,
        128,
        128,
        72,
        40,
    ]
    assert TableConfig("t", 10, 7, "int4").row_bytes == 4 + 8
    assert TableConfig("t", 10, 7, "int8").num_bytes == 10 * 15
    assert TableConfig("t", 10, 32, "int8", row_alignment=64).row_bytes == 64
    assert TableConfig("t", 10, 64, "int8", row_alignment=16).row_bytes == 80
    assert TableConfig("t", 10, 32, "float32", row_alignment=64).row_bytes == 128
    with pytest.raises(ValueError, match=r"row_alignment must be a power of two from 1 to 256"):
        TableConfig("t", 10, 7, "int8", row_alignment=48)
    with pytest.raises(ValueError, match=r"unknown dtype 'int3'; expected one of \("):
        TableConfig("t", 10, 7, "int3")


@pytest.mark.parametrize(
    ("dtype", "values", "representable"),
    [
        ("int8", [[1.0, 2.0]], True),
        ("int8", [[-3e38, 3e38]], False),  # the range overflows float32
        ("int4", [[np.nan, 1.0]], False),
        ("float16", [[65504.0, -1.0]], True),
        ("float16", [[70000.0, 1.0]], False),
        ("bfloat16", [[3e38, -3e38]], True),
        ("float32", [[np.inf, 0.0]], False),
    ],
)
def test_representable_names_what_cannot_be_stored(dtype, values, representable):
    row_format = RowFormat(dtype, 2)
    assert bool(row_format.representable(jnp.asarray(values, jnp.float32))) == representable
