"""The "dot" interaction of DLRM (Naumov et al., 2019): pairwise dot products of all features."""

import jax
import jax.numpy as jnp
import numpy as np

from recjax.layers.interactions.base import Interaction


class DotInteraction(Interaction):
    """dense [B, D], pooled [B, T, D] -> [B, D + (T + 1) T / 2].

    The features are the dense vector followed by the T pooled embeddings, Z = [z_0, ..., z_T].
    The products z_i . z_j are taken for j < i, in row order (i = 1, j = 0; i = 2, j = 0, 1; ...),
    i.e. the strict lower triangle of Z Z^T read row by row, as in the reference DLRM, and follow
    the dense vector.
    """

    @classmethod
    def check_widths(cls, dense_width: int, num_features: int, dim: int) -> None:
        if dense_width != dim:
            raise ValueError(
                f"The dot interaction needs the dense width ({dense_width}) to equal the "
                f"embedding dim ({dim})."
            )

    @classmethod
    def output_width(cls, dense_width: int, num_features: int, dim: int) -> int:
        return dense_width + (num_features + 1) * num_features // 2

    @classmethod
    def flops_per_sample(cls, dense_width: int, num_features: int, dim: int) -> int:
        """The whole (T + 1) x (T + 1) Gram matrix is computed (the count is what is computed)."""
        return 2 * (num_features + 1) ** 2 * dim

    def __call__(self, dense: jax.Array, pooled: jax.Array) -> jax.Array:
        features = jnp.concatenate([dense[:, None, :], pooled], axis=1)  # [B, T + 1, D]
        gram = jnp.einsum("bid,bjd->bij", features, features)  # [B, T + 1, T + 1]
        rows, cols = np.tril_indices(features.shape[1], k=-1)
        return jnp.concatenate([dense, gram[:, rows, cols]], axis=1)
