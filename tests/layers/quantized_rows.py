"""NumPy references for stored rows, written from the layout's description, not from the code.

A quantized row of dim D: its codes (int8: one byte each; int4: code d in byte d // 2, the low
nibble for even d), then a little-endian float32 scale and a float32 bias; value = code * scale +
bias. Floats are stored as themselves.
"""

import ml_dtypes
import numpy as np

BITS = {"int8": 8, "int4": 4}
FLOATS = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def code_bytes(dtype: str, dim: int) -> int:
    return dim if dtype == "int8" else (dim + 1) // 2


def numpy_encode(values: np.ndarray, dtype: str, alignment: int = 1) -> np.ndarray:
    """`numpy_packed` rows, zero-padded to a multiple of `alignment` bytes."""
    packed = numpy_packed(values, dtype)
    row_bytes = packed.shape[1] * packed.dtype.itemsize
    padding = (-row_bytes % alignment) // packed.dtype.itemsize
    return np.pad(packed, ((0, 0), (0, padding)))


def numpy_packed(values: np.ndarray, dtype: str) -> np.ndarray:
    """[R, D] float32 -> stored rows: min-max row-wise quantization in float32, rounded half to
    even (scale = range x float32(1 / levels), code = (x - min) x (1 / scale))."""
    values = np.asarray(values, np.float32)
    if dtype in FLOATS:
        return values.astype(FLOATS[dtype])
    levels = 2 ** BITS[dtype] - 1
    rows, dim = values.shape
    low = values.min(axis=1, keepdims=True)
    scale = (values.max(axis=1, keepdims=True) - low) * np.float32(1 / levels)
    with np.errstate(divide="ignore", over="ignore"):
        inverse = np.where(scale > 0, np.float32(1) / scale, np.float32(0))
    inverse = np.where(np.isfinite(inverse), inverse, np.float32(0))
    codes = np.clip(np.rint((values - low) * inverse), 0, levels).astype(np.uint8)
    packed = np.zeros((rows, code_bytes(dtype, dim)), np.uint8)
    for d in range(dim):
        if dtype == "int8":
            packed[:, d] = codes[:, d]
        else:
            packed[:, d // 2] |= codes[:, d] << (4 * (d % 2))
    scale_bias = np.concatenate([scale, low], axis=1).astype("<f4").view(np.uint8)
    return np.concatenate([packed, scale_bias], axis=1)


def numpy_decode(stored: np.ndarray, dtype: str, dim: int) -> np.ndarray:
    """Stored rows [..., W] -> [..., D] float64 values (exact: code * scale + bias in float64)."""
    stored = np.asarray(stored)
    if dtype in FLOATS:
        return stored[..., :dim].astype(np.float64)
    width = code_bytes(dtype, dim)
    packed = stored[..., :width]
    if dtype == "int8":
        codes = packed
    else:
        codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1)
        codes = codes[..., :dim]
    scale_bias = np.ascontiguousarray(stored[..., width : width + 8]).view("<f4")
    return codes * scale_bias[..., :1].astype(np.float64) + scale_bias[..., 1:].astype(np.float64)


def row_magnitudes(stored: np.ndarray, dtype: str, dim: int) -> np.ndarray:
    """[..., D] bounds on |value| and on the terms summed to make it (|code * scale| + |bias|),
    for tolerances of float32 sums."""
    if dtype in FLOATS:
        return np.abs(np.asarray(stored[..., :dim], np.float64))
    width = code_bytes(dtype, dim)
    scale_bias = np.abs(np.ascontiguousarray(stored[..., width : width + 8]).view("<f4"))
    levels = 2 ** BITS[dtype] - 1
    bound = levels * scale_bias[..., :1].astype(np.float64) + scale_bias[..., 1:]
    return np.broadcast_to(bound, (*stored.shape[:-1], dim))
