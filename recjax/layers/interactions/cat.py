"""The "cat" interaction of RMC1-3: concatenate the dense vector and every pooled embedding."""

import jax
import jax.numpy as jnp

from recjax.layers.interactions.base import Interaction


class CatInteraction(Interaction):
    """dense [B, H], pooled [B, T, D] -> [B, H + T * D]: the dense vector, then the features'
    vectors in feature order. No parameters, no FLOPs."""

    @classmethod
    def output_width(cls, dense_width: int, num_features: int, dim: int) -> int:
        return dense_width + num_features * dim

    @classmethod
    def flops_per_sample(cls, dense_width: int, num_features: int, dim: int) -> int:
        return 0

    def __call__(self, dense: jax.Array, pooled: jax.Array) -> jax.Array:
        return jnp.concatenate([dense, pooled.reshape(pooled.shape[0], -1)], axis=1)
