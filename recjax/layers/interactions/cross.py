"""The low-rank cross network of DCN-V2 (Wang et al., WWW 2021), the interaction of DLRM-v2.

    x_0 = [dense, e_1, ..., e_T]                          [B, N], N = H + T * D
    x_{l+1} = x_0 * (U_l (V_l x_l) + b_l) + x_l           l = 0, ..., L - 1

U_l is [N, r], V_l is [r, N] (rank r), b_l is [N]; `*` is the element-wise product. The paper's
full-rank layer has W_l = U_l V_l; the low-rank form is what MLPerf's DLRM-v2 runs (TorchRec's
`LowRankCrossNet`, whose `W_kernels` are the U_l here). The output keeps the input's width N and
goes to the top MLP (DCN-V2's "stacked" structure).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from recjax.layers.interactions.base import Interaction


class LowRankCrossLayer(nnx.Module):
    """One layer: (x_0 [B, N], x_l [B, N]) -> x_0 * (U (V x_l) + b) + x_l [B, N].

    Parameters in the paper's (and TorchRec's) orientation: U [N, r], V [r, N], bias [N]; U and V
    Glorot-normal (TorchRec's xavier_normal_), the bias zero.
    """

    def __init__(self, width: int, rank: int, *, rngs: nnx.Rngs):
        glorot = nnx.initializers.glorot_normal()
        self.U = nnx.Param(glorot(rngs.params(), (width, rank), jnp.float32))
        self.V = nnx.Param(glorot(rngs.params(), (rank, width), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((width,), jnp.float32))

    def __call__(self, x0: jax.Array, x: jax.Array) -> jax.Array:
        projected = jnp.einsum("bn,rn->br", x, self.V[...])  # V x_l: [B, r]
        expanded = jnp.einsum("br,nr->bn", projected, self.U[...])  # U (V x_l): [B, N]
        return x0 * (expanded + self.bias[...]) + x


class CrossInteraction(Interaction):
    """dense [B, H], pooled [B, T, D] -> [B, N], N = H + T * D: the cross network over the "cat"
    concatenation (the dense vector, then the features' vectors in feature order).

    Options: `num_layers` (L >= 1) and `rank` (r >= 1). Any widths are accepted (TorchRec's
    DLRM_DCN also asks H = D, which `recjax.interop.torchrec_dlrm_dcn` checks for its layout).

    Example:
        >>> cross = CrossInteraction(128, 26, 128, num_layers=3, rank=512, rngs=nnx.Rngs(0))
        >>> cross(jnp.ones((4, 128)), jnp.ones((4, 26, 128))).shape
        (4, 3456)
    """

    OPTIONS = ("num_layers", "rank")

    def __init__(
        self,
        dense_width: int,
        num_features: int,
        dim: int,
        *,
        num_layers: int,
        rank: int,
        rngs: nnx.Rngs,
    ):
        self.check_widths(dense_width, num_features, dim, num_layers=num_layers, rank=rank)
        self.dense_width = dense_width
        self.num_features = num_features
        self.dim = dim
        width = self.output_width(dense_width, num_features, dim, num_layers=num_layers, rank=rank)
        self.layers = nnx.List(
            [LowRankCrossLayer(width, rank, rngs=rngs) for _ in range(num_layers)]
        )

    @classmethod
    def check_widths(
        cls, dense_width: int, num_features: int, dim: int, *, num_layers: int, rank: int
    ) -> None:
        if num_layers < 1 or rank < 1:
            raise ValueError(
                f"The cross network needs at least one layer and a rank of at least 1; got "
                f"num_layers={num_layers}, rank={rank}."
            )

    @classmethod
    def output_width(
        cls, dense_width: int, num_features: int, dim: int, *, num_layers: int, rank: int
    ) -> int:
        return dense_width + num_features * dim

    @classmethod
    def flops_per_sample(
        cls, dense_width: int, num_features: int, dim: int, *, num_layers: int, rank: int
    ) -> int:
        """Per layer: V x and U (V x) are 2 N r each, the bias, the product with x_0 and the
        residual N each: L (4 N r + 3 N)."""
        width = dense_width + num_features * dim
        return num_layers * (4 * width * rank + 3 * width)

    def __call__(self, dense: jax.Array, pooled: jax.Array) -> jax.Array:
        x0 = jnp.concatenate([dense, pooled.reshape(pooled.shape[0], -1)], axis=1)  # [B, N]
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x
