"""Multi-layer perceptron: the dense arch (bottom MLP) and the over arch (top MLP) of DLRM."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from recjax import native

# The dtypes an MLP's kernels may be stored in; biases and activations stay float32.
MLP_DTYPES = ("float32", "bfloat16")

# XLA:CPU (jaxlib 0.10) lowers a dot of a bfloat16 kernel by first converting the whole kernel to
# a float32 copy, every call: more bytes than the float32 GEMV it should halve. Up to this batch
# size (the GEMV regime of RMC3's batch-1 latency) a bfloat16 layer runs recjax's native kernel
# (recjax/native/bfloat16_matmul.cc: each weight read once, widened in registers); above it, or
# without the native library, XLA's dot of the widened kernel, whose conversion is small beside
# the matrix product there. (Written as a multiply and a sum over the input axis instead, XLA
# fuses the widening into one YNNPACK fusion; in a functional check on a busy machine, not a
# measurement, rmc3-tiny's batch-1 call in that form took ten times as long as its batch-32 call
# with the dot, so it was dropped.) Measured on rmc3 (docs/results/2026-11-27-intel-xeon-2core.md):
# bfloat16 takes 0.77-0.81x the float32 time at batch 1, 0.93-1.14x at 16, 1.2x at 64 (XLA's dot).
BFLOAT16_NATIVE_MAX_BATCH = 16


class MLP(nnx.Module):
    """A stack of fully connected layers with ReLU between them.

    Input  [B, in_features] float32.
    Output [B, layer_sizes[-1]] float32.

    Weights are initialized as in the reference DLRM: Glorot (Xavier) normal kernels, and zero
    biases. With `relu_last=True` the last layer is followed by a ReLU too (the DLRM bottom MLP);
    with `relu_last=False` it is linear (the DLRM top MLP, whose logit goes to a sigmoid).

    `param_dtype="bfloat16"` stores the kernels in bfloat16 (half the bytes a GEMV must read): they
    are initialized in float32 and rounded, so they are the float32 MLP's kernels rounded to
    bfloat16. Each layer widens its kernel to float32 as it reads it: inputs, sums, biases and
    outputs stay float32 (weight-only reduced precision).

    Example:
        >>> mlp = MLP(in_features=256, layer_sizes=(128, 64), relu_last=True, rngs=nnx.Rngs(0))
        >>> mlp(jnp.ones((8, 256))).shape
        (8, 64)
    """

    def __init__(
        self,
        in_features: int,
        layer_sizes: Sequence[int],
        *,
        relu_last: bool,
        rngs: nnx.Rngs,
        param_dtype: str = "float32",
    ):
        if not layer_sizes:
            raise ValueError("MLP needs at least one layer; got layer_sizes=().")
        if param_dtype not in MLP_DTYPES:
            raise ValueError(
                f"Unknown MLP param_dtype {param_dtype!r}; expected one of {MLP_DTYPES}."
            )
        widths = (in_features, *layer_sizes)
        self.layers = nnx.List(
            [
                nnx.Linear(
                    width_in,
                    width_out,
                    kernel_init=nnx.initializers.glorot_normal(),
                    bias_init=nnx.initializers.zeros_init(),
                    rngs=rngs,
                )
                for width_in, width_out in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        if param_dtype != "float32":
            for layer in self.layers:
                layer.kernel = nnx.Param(layer.kernel[...].astype(param_dtype))
        self.relu_last = relu_last

    def __call__(self, x: jax.Array) -> jax.Array:
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            kernel = layer.kernel[...]
            x = layer(x) if kernel.dtype == jnp.float32 else _widened_dense(x, kernel, layer.bias)
            if index < last or self.relu_last:
                x = nnx.relu(x)
        return x


def _widened_dense(x: jax.Array, kernel: jax.Array, bias: nnx.Param) -> jax.Array:
    """[B, I] float32 x [I, O] bfloat16 kernel + bias -> [B, O] float32.

    The kernel is widened to float32 as it is read; x stays float32 and sums are float32, so the
    only rounding is the kernel's own (weight-only reduced precision).
    """
    if x.shape[0] <= BFLOAT16_NATIVE_MAX_BATCH and native.availability()[0]:
        out = native.bfloat16_matmul(x, kernel)
    else:
        out = x @ kernel.astype(jnp.float32)
    return out + bias[...]


def mlp_flops(in_features: int, layer_sizes: Sequence[int]) -> int:
    """Floating-point operations of one sample through the MLP (a multiply-add counts as two)."""
    widths = (in_features, *layer_sizes)
    return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
