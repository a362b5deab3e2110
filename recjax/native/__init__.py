"""recjax's optional native CPU code, built by the package's install step (see setup.py).

`sparse_lengths_sum` runs the C++ embedding bag of embedding_bag.cc inside jitted programs, through
JAX's foreign function interface, and `bfloat16_matmul` the float32 x bfloat16 matrix product of
bfloat16_matmul.cc; `gather_rows` and `stream_read` are the plain C++ loops of
probes.cc, called through ctypes by `benchmarks.machine`. When the library was not built (no
compiler at install time, say), `availability()` says why, and callers fall back to pure JAX.
"""

import ctypes
import functools
import glob
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

FFI_TARGET = "recjax_sparse_lengths_sum"
UPDATE_TARGET = "recjax_sparse_row_update"
ADAGRAD_TARGET = "recjax_sparse_rowwise_adagrad"
MATMUL_FFI_TARGET = "recjax_bfloat16_matmul"
# The training steps' targets and handler symbols: a library built before a step lacks it.
TRAINING_TARGETS = {
    UPDATE_TARGET: "RecjaxSparseRowUpdate",
    ADAGRAD_TARGET: "RecjaxSparseRowwiseAdagrad",
}


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str]:
    """The library and where it was found, or None and why not. Registers the FFI target once."""
    directory = os.path.dirname(os.path.abspath(__file__))
    candidates = sorted(glob.glob(os.path.join(directory, "_kernels*.so")))
    if not candidates:
        return None, (
            f"no compiled library in {directory}; reinstall with `pip install -e .` on a machine "
            "with a C++ compiler"
        )
    try:
        library = ctypes.cdll.LoadLibrary(candidates[0])
    except OSError as error:
        return None, f"{candidates[0]} failed to load: {error}"
    jax.ffi.register_ffi_target(
        FFI_TARGET, jax.ffi.pycapsule(library.RecjaxSparseLengthsSum), platform="cpu"
    )
    jax.ffi.register_ffi_target(
        MATMUL_FFI_TARGET, jax.ffi.pycapsule(library.RecjaxBfloat16Matmul), platform="cpu"
    )
    for target, symbol in TRAINING_TARGETS.items():
        if hasattr(library, symbol):
            jax.ffi.register_ffi_target(
                target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
            )
    library.recjax_gather_rows.restype = ctypes.c_double
    library.recjax_gather_rows.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int,
    ]
    library.recjax_stream_read.restype = ctypes.c_double
    library.recjax_stream_read.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    return library, candidates[0]


def availability() -> tuple[bool, str]:
    """(True, the library's path) or (False, why it is unavailable)."""
    library, detail = _load()
    return library is not None, detail


def _library() -> ctypes.CDLL:
    library, detail = _load()
    if library is None:
        raise RuntimeError(f"recjax's native library is unavailable: {detail}.")
    return library


def sparse_lengths_sum(
    stacked: jax.Array,
    ids: jax.Array,
    lengths: jax.Array | None,
    weights: jax.Array | None,
    *,
    row_offsets: Sequence[int],
    mean: bool,
    dtype: str = "float32",
    dim: int | None = None,
) -> jax.Array:
    """Pooled embedding bags by the C++ kernel, usable inside `jax.jit`.

    Args:
      stacked: [N, W] stored rows of tables of one dim and dtype, stacked: [N, D] float32,
        float16 or bfloat16, or [N, W] uint8 row-wise quantized rows (the formats of
        `recjax.layers.quantization`).
      ids: [B, T, C] int32 ids within each bag's table; rows are clamped to [0, N) by the kernel.
      lengths: [B, T] int32 valid ids per bag, or None when every bag holds C ids.
      weights: [B, T, C] float32 per-id weights, or None.
      row_offsets: T ints, the first row of bag t's table in `stacked`.
      mean: divide each bag's sum by its length.
      dtype: how `stacked` stores its rows: "float32", "float16", "bfloat16", "int8" or "int4".
      dim: D, the values per row; default W (right for the float dtypes).

    Returns:
      [B, T, D] float32: rows read as float32 (quantized: code * scale + bias), summed in float32.
    """
    _library()
    batch, num_bags, _ = ids.shape
    dim = stacked.shape[1] if dim is None else dim
    result = jax.ShapeDtypeStruct((batch, num_bags, dim), jnp.float32)
    no_lengths = jnp.zeros((0,), jnp.int32)
    no_weights = jnp.zeros((0,), jnp.float32)
    return jax.ffi.ffi_call(FFI_TARGET, result)(
        stacked,
        ids,
        no_lengths if lengths is None else lengths,
        no_weights if weights is None else weights,
        row_offsets=np.asarray(row_offsets, np.int64),
        mean=bool(mean),
        dtype=dtype,
        dim=np.int64(dim),
    )


def _has_target(target: str) -> bool:
    library, _ = _load()
    return library is not None and hasattr(library, TRAINING_TARGETS[target])


def has_sparse_row_update() -> bool:
    """Whether the library holds `sparse_row_update` (the sparse SGD step of training)."""
    return _has_target(UPDATE_TARGET)


def sparse_row_update(
    table: jax.Array, rows: jax.Array, factors: jax.Array, grads: jax.Array, scale: jax.Array
) -> jax.Array:
    """table[rows[b, t, c]] += scale * factors[b, t, c] * grad(b, t, c), in place, by the C++
    kernel of sparse_update.cc (usable inside `jax.jit`; donate `table` for no copy).

    Args:
      table: [N, D] float32.
      rows: [B, T, C] int32 rows of `table` (clamped to [0, N)).
      factors: [B, T, C] float32 per-lookup factors.
      grads: [B, T, D] float32 (one per bag) or [B, T, C, D] (one per position).
      scale: [] float32, e.g. -learning_rate.

    Returns:
      The updated [N, D] table (the same buffer when `table` is donated). Repeated rows sum.
    """
    if not has_sparse_row_update():
        raise RuntimeError("recjax's native library has no sparse_row_update; rebuild it.")
    return jax.ffi.ffi_call(
        UPDATE_TARGET,
        jax.ShapeDtypeStruct(table.shape, table.dtype),
        input_output_aliases={0: 0},
    )(
        table,
        rows.astype(jnp.int32),
        factors.astype(jnp.float32),
        grads.astype(jnp.float32),
        jnp.asarray(scale, jnp.float32),
    )


def has_sparse_rowwise_adagrad() -> bool:
    """Whether the library holds `sparse_rowwise_adagrad` (the row-wise Adagrad table step)."""
    return _has_target(ADAGRAD_TARGET)


def sparse_rowwise_adagrad(
    table: jax.Array,
    accumulator: jax.Array,
    rows: jax.Array,
    factors: jax.Array,
    grads: jax.Array,
    learning_rate: jax.Array,
    epsilon: float,
    slot_tables: Sequence[int],
) -> tuple[jax.Array, jax.Array]:
    """Row-wise Adagrad on the looked-up rows, in place, by the C++ kernel of sparse_update.cc
    (usable inside `jax.jit`; donate `table` and `accumulator` for no copy).

    With g_r the sum of row r's lookup gradients (factors[b, t, c] * grad(b, t, c)):
    accumulator[r] += mean_d(g_r[d]^2), table[r] -= learning_rate * g_r / (sqrt(accumulator[r]) +
    epsilon), for every row looked up with a nonzero factor.

    Args:
      table: [N, D] float32.
      accumulator: [N] float32.
      rows, factors, grads: as `sparse_row_update` takes them.
      learning_rate: [] float32.
      epsilon: added to the root of the accumulator.
      slot_tables: T ints, the table each bag slot reads (slots that read one table share its
        number: their lookups are summed together). The kernel steps one table at a time, so its
        scratch holds at most one table's lookup gradients.

    Returns:
      The updated table [N, D] and accumulator [N] (the same buffers when donated).
    """
    if not has_sparse_rowwise_adagrad():
        raise RuntimeError("recjax's native library has no sparse_rowwise_adagrad; rebuild it.")
    return jax.ffi.ffi_call(
        ADAGRAD_TARGET,
        (
            jax.ShapeDtypeStruct(table.shape, jnp.float32),
            jax.ShapeDtypeStruct(accumulator.shape, jnp.float32),
        ),
        input_output_aliases={0: 0, 1: 1},
    )(
        table,
        accumulator,
        rows.astype(jnp.int32),
        factors.astype(jnp.float32),
        grads.astype(jnp.float32),
        jnp.asarray(learning_rate, jnp.float32),
        jnp.asarray(epsilon, jnp.float32),
        slot_tables=np.asarray(slot_tables, np.int64),
    )


def bfloat16_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """[B, K] float32 @ [K, N] bfloat16 -> [B, N] float32 by the C++ kernel, usable inside
    `jax.jit`: each weight is read once and widened in registers, sums are float32."""
    _library()
    result = jax.ShapeDtypeStruct((x.shape[0], kernel.shape[1]), jnp.float32)
    return jax.ffi.ffi_call(MATMUL_FFI_TARGET, result)(x.astype(jnp.float32), kernel)


def gather_rows(table: np.ndarray, row_ids: np.ndarray, threads: int) -> float:
    """Sums table[row_ids] ([rows, D] float32, ids int32) on `threads` threads; returns the sum."""
    if table.dtype != np.float32 or row_ids.dtype != np.int32 or not table.flags.c_contiguous:
        raise ValueError("gather_rows needs a C-contiguous float32 table and int32 row ids.")
    if row_ids.size and (row_ids.min() < 0 or row_ids.max() >= table.shape[0]):
        raise ValueError(f"gather_rows: row ids must lie in [0, {table.shape[0]}).")
    return _library().recjax_gather_rows(
        table.ctypes.data, table.shape[1], row_ids.ctypes.data, row_ids.size, threads
    )


def stream_read(data: np.ndarray, threads: int) -> float:
    """Sums a contiguous float32 array on `threads` threads; returns the sum."""
    if data.dtype != np.float32 or not data.flags.c_contiguous:
        raise ValueError("stream_read needs a C-contiguous float32 array.")
    return _library().recjax_stream_read(data.ctypes.data, data.size, threads)
