"""What every interaction provides. Shapes: `B` batch, `H` dense width, `T` features, `D` dim."""

import jax
from flax import nnx


class Interaction(nnx.Module):
    """dense [B, H] and pooled embeddings [B, T, D] -> [B, W].

    Subclasses implement `__call__`, `output_width` and `flops_per_sample`; `check_widths` raises
    ValueError for widths the interaction cannot take. A parameterized interaction may take
    keyword options beyond the widths (the cross network's layers and rank): it names them in
    `OPTIONS`, and its constructor and class methods take them by those names.
    """

    # The keyword options the constructor and the class methods take beyond the widths.
    OPTIONS: tuple[str, ...] = ()

    def __init__(self, dense_width: int, num_features: int, dim: int, *, rngs: nnx.Rngs):
        self.check_widths(dense_width, num_features, dim)
        self.dense_width = dense_width
        self.num_features = num_features
        self.dim = dim

    @classmethod
    def check_widths(cls, dense_width: int, num_features: int, dim: int) -> None:
        """Raises ValueError if the interaction cannot take these widths (none by default)."""

    @classmethod
    def output_width(cls, dense_width: int, num_features: int, dim: int) -> int:
        raise NotImplementedError

    @classmethod
    def flops_per_sample(cls, dense_width: int, num_features: int, dim: int) -> int:
        raise NotImplementedError

    def __call__(self, dense: jax.Array, pooled: jax.Array) -> jax.Array:
        raise NotImplementedError
