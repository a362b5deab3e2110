"""Multi-layer perceptron: the dense arch (bottom MLP) and the over arch (top MLP) of DLRM."""

from collections.abc import Sequence

import jax
from flax import nnx


class MLP(nnx.Module):
    """A stack of fully connected layers with ReLU between them.

    Input  [B, in_features] float32.
    Output [B, layer_sizes[-1]] float32.

    Weights are initialized as in the reference DLRM: Glorot (Xavier) normal kernels, and zero
    biases. With `relu_last=True` the last layer is followed by a ReLU too (the DLRM bottom MLP);
    with `relu_last=False` it is linear (the DLRM top MLP, whose logit goes to a sigmoid).

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
    ):
        if not layer_sizes:
            raise ValueError("MLP needs at least one layer; got layer_sizes=().")
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
        self.relu_last = relu_last

    def __call__(self, x: jax.Array) -> jax.Array:
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < last or self.relu_last:
                x = nnx.relu(x)
        return x


def mlp_flops(in_features: int, layer_sizes: Sequence[int]) -> int:
    """Floating-point operations of one sample through the MLP (a multiply-add counts as two)."""
    widths = (in_features, *layer_sizes)
    return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
