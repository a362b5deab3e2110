"""How an embedding table's rows are stored, and the codecs between stored rows and float32.

Shapes: `R` rows, `D` embedding dim, `W` the stored width of a row (`RowFormat.width`).

    dtype       stored as                     a value read as float32
    float32     [R, D] float32                itself
    float16     [R, D] float16                itself, widened
    bfloat16    [R, D] bfloat16               itself, widened
    int8        [R, D + 8] uint8              q * scale + bias
    int4        [R, ceil(D / 2) + 8] uint8    q * scale + bias

A row may be padded with zeros to a multiple of `alignment` bytes (`TableConfig.row_alignment`;
W grows accordingly); padding is never read.

A quantized row holds its D codes q (int8: one byte each; int4: code d in byte d // 2, the low
nibble for even d, the high nibble for odd d), then its scale and its bias as little-endian float32
(4 bytes each). The int8 row is FBGEMM's fused 8-bit row-wise layout (FBGEMM's
`FloatToFused8BitRowwiseQuantizedSBFloat`, the rows of Caffe2's SparseLengthsSumFused8BitRowwise);
the int4 row packs its codes as FBGEMM's fused n-bit rows do but keeps a float32 scale and bias
where FBGEMM keeps float16 ones (4 bytes more per row): a float16 scale and bias overflow above
65,504 and lose precision below 6.1e-5, where the scale of an int4 table of the presets lies
(uniform(-1/sqrt(R), 1/sqrt(R)) init: range / 15 is about 7e-5 for rmc1's 4M-row tables).
docs/design/quantized-tables.md compares the layouts.

Quantization (`encode`) is post-training and row-wise, FBGEMM's asymmetric min-max scheme, in
float32: per row, bias = min, scale = (max - min) x float32(1 / (2^bits - 1)), q =
round-half-even((x - min) x (1 / scale)) clipped to [0, 2^bits - 1]. A row of equal values gets
scale 0 and all-zero codes, so it decodes exactly. A value's error is at most about scale / 2
(plus float32 rounding). Both steps multiply by a reciprocal, as XLA:CPU computes a division by a
broadcast scalar anyway (the result is then the same bytes under jit and in NumPy). FBGEMM's
8-bit quantizer computes range / 255 and (x - min) x 255 / (range + 1e-8): its scales may differ
from recjax's by a float32 ulp, and its epsilon drops levels on rows of a range near 1e-8 or below,
which recjax keeps.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from recjax.inputs.features import (
    QUANTIZED_TABLE_DTYPES,
    SCALE_BIAS_BYTES,
    TABLE_DTYPES,
    packed_row_bytes,
    row_bytes,
)

# float16's largest finite value: larger magnitudes round to infinity.
FLOAT16_MAX = 65504.0


@dataclasses.dataclass(frozen=True)
class RowFormat:
    """How the rows of a table (or a stacked group of tables) of one dim and dtype are stored.

    Attributes:
      dtype: one of `recjax.inputs.features.TABLE_DTYPES`.
      dim: D, the values per row.
      alignment: rows are padded with zeros to a multiple of this many bytes (1: packed).

    Example:
        >>> row_format = RowFormat("int8", 4)
        >>> stored = row_format.encode(jnp.asarray([[0.0, 1.0, 2.0, 3.0]]))   # [1, 12] uint8
        >>> row_format.decode(stored)                                        # [1, 4] float32
        Array([[0., 1., 2., 3.]], dtype=float32)
    """

    dtype: str
    dim: int
    alignment: int = 1

    def __post_init__(self):
        if self.dtype not in TABLE_DTYPES:
            raise ValueError(f"Unknown table dtype {self.dtype!r}; expected one of {TABLE_DTYPES}.")
        if self.dim <= 0:
            raise ValueError(f"A row needs a positive dim; got {self.dim}.")
        if self.alignment < 1 or self.alignment & (self.alignment - 1):
            raise ValueError(f"A row alignment must be a power of two; got {self.alignment}.")

    @property
    def quantized(self) -> bool:
        return self.dtype in QUANTIZED_TABLE_DTYPES

    @property
    def storage_dtype(self) -> jnp.dtype:
        """The element type of the stored buffer: the float type, or uint8 for quantized rows."""
        return jnp.dtype(jnp.uint8 if self.quantized else self.dtype)

    @property
    def width(self) -> int:
        """W: elements per stored row (D for packed floats, code bytes + 8 for packed quantized
        rows; more with padding)."""
        return self.row_bytes // self.storage_dtype.itemsize

    @property
    def row_bytes(self) -> int:
        """Bytes of one stored row, padding included."""
        return row_bytes(self.dim, self.dtype, self.alignment)

    @property
    def code_bytes(self) -> int:
        """Bytes of a quantized row's codes (before its scale and bias)."""
        return packed_row_bytes(self.dim, self.dtype) - SCALE_BIAS_BYTES

    @property
    def levels(self) -> int:
        """The largest code of a quantized row: 2^bits - 1."""
        return 2 ** QUANTIZED_TABLE_DTYPES[self.dtype] - 1

    def shape(self, num_rows: int) -> tuple[int, int]:
        """[R, W]: the stored shape of `num_rows` rows."""
        return (num_rows, self.width)

    def encode(self, values: jax.Array) -> jax.Array:
        """[R, D] float32 -> [R, W] stored rows (rounded to the float type, or quantized)."""
        values = jnp.asarray(values, jnp.float32)
        if not self.quantized:
            return self._pad(values.astype(self.storage_dtype))
        low = values.min(axis=1, keepdims=True)  # [R, 1], the bias
        scale = (values.max(axis=1, keepdims=True) - low) * jnp.float32(1 / self.levels)
        # 1 / scale overflows for the few rows whose range is below ~3e-36: their codes are 0.
        inverse = jnp.where(scale > 0, 1 / jnp.where(scale > 0, scale, 1.0), 0.0)
        inverse = jnp.where(jnp.isfinite(inverse), inverse, 0.0)
        codes = jnp.clip(jnp.rint((values - low) * inverse), 0, self.levels).astype(jnp.uint8)
        if self.dtype == "int4":
            if self.dim % 2:
                codes = jnp.pad(codes, ((0, 0), (0, 1)))
            codes = codes[:, 0::2] | (codes[:, 1::2] << 4)  # [R, ceil(D / 2)]
        scale_bias = jnp.concatenate([scale, low], axis=1)  # [R, 2] float32
        scale_bias = jax.lax.bitcast_convert_type(scale_bias, jnp.uint8)  # [R, 2, 4]
        return self._pad(jnp.concatenate([codes, scale_bias.reshape(-1, SCALE_BIAS_BYTES)], 1))

    def encode_on_host(self, values: np.ndarray) -> np.ndarray:
        """`encode` for a NumPy block built on the host (table shards, whole tables at start-up):
        packed float32 rows are the values themselves, returned without a copy to the device."""
        if self.dtype == "float32" and self.width == self.dim:
            return np.asarray(values, np.float32)
        return np.asarray(self.encode(values))

    def _pad(self, rows: jax.Array) -> jax.Array:
        """[R, packed width] -> [R, W], zeros after each row's data."""
        padding = self.width - rows.shape[1]
        return jnp.pad(rows, ((0, 0), (0, padding))) if padding else rows

    def decode(self, rows: jax.Array) -> jax.Array:
        """[..., W] stored rows -> [..., D] float32 values."""
        if not self.quantized:
            return rows[..., : self.dim].astype(jnp.float32)
        codes = rows[..., : self.code_bytes]
        if self.dtype == "int4":
            nibbles = jnp.stack([codes & 0xF, codes >> 4], axis=-1)  # [..., ceil(D / 2), 2]
            codes = nibbles.reshape(*codes.shape[:-1], -1)[..., : self.dim]
        scale_bias = rows[..., self.code_bytes : self.code_bytes + SCALE_BIAS_BYTES]
        scale_bias = scale_bias.reshape(*scale_bias.shape[:-1], 2, 4)
        scale_bias = jax.lax.bitcast_convert_type(scale_bias, jnp.float32)  # [..., 2]
        return codes.astype(jnp.float32) * scale_bias[..., :1] + scale_bias[..., 1:]

    def representable(self, values: jax.Array) -> jax.Array:
        """A scalar bool: whether every row of [R, D] float32 `values` can be stored.

        Non-finite values never can; float16 holds magnitudes up to 65,504; a quantized row needs
        a range (max - min) that float32 holds.
        """
        finite = jnp.all(jnp.isfinite(values))
        if self.dtype == "float16":
            return finite & jnp.all(jnp.abs(values) <= FLOAT16_MAX)
        if self.quantized:
            spans = values.max(axis=1) - values.min(axis=1)
            return finite & jnp.all(jnp.isfinite(spans))
        return finite

    def describe_limits(self) -> str:
        """What `representable` asks of the values, in words (for error messages)."""
        if self.dtype == "float16":
            return "finite values of magnitude at most 65,504"
        if self.quantized:
            return "finite values whose range (max - min) per row is a finite float32"
        return "finite values"
