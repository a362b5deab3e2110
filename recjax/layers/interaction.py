"""Feature interactions of DLRM: how the dense vector meets the pooled embeddings.

Shapes: `B` batch, `T` embedding tables, `D` embedding dim, `H` bottom-MLP output width.
"""

import jax
import jax.numpy as jnp
import numpy as np

INTERACTIONS = ("cat", "dot")


def cat_interaction(dense: jax.Array, pooled: jax.Array) -> jax.Array:
    """Concatenate the bottom-MLP output with every pooled embedding (RMC1-3).

    Args:
      dense: [B, H] bottom-MLP output.
      pooled: [B, T, D] pooled embeddings, one per table.

    Returns:
      [B, H + T * D]: the dense vector followed by the tables' vectors in table order.
    """
    batch = pooled.shape[0]
    return jnp.concatenate([dense, pooled.reshape(batch, -1)], axis=1)


def dot_interaction(dense: jax.Array, pooled: jax.Array) -> jax.Array:
    """Pairwise dot products of all feature vectors (the DLRM default), after the dense vector.

    The features are the bottom-MLP output followed by the T pooled embeddings, Z = [z_0, ..., z_T].
    The products z_i . z_j are taken for j < i, in row order (i = 1, j = 0; i = 2, j = 0, 1; ...),
    i.e. the strict lower triangle of Z Z^T read row by row, as in the reference DLRM.

    Args:
      dense: [B, D] bottom-MLP output (its width must equal the embedding dim).
      pooled: [B, T, D] pooled embeddings.

    Returns:
      [B, D + (T + 1) * T / 2].
    """
    if dense.shape[-1] != pooled.shape[-1]:
        raise ValueError(
            f"The dot interaction needs the bottom-MLP output width ({dense.shape[-1]}) to equal "
            f"the embedding dim ({pooled.shape[-1]})."
        )
    features = jnp.concatenate([dense[:, None, :], pooled], axis=1)  # [B, T + 1, D]
    gram = jnp.einsum("bid,bjd->bij", features, features)  # [B, T + 1, T + 1]
    rows, cols = np.tril_indices(features.shape[1], k=-1)
    return jnp.concatenate([dense, gram[:, rows, cols]], axis=1)


def interaction_width(kind: str, dense_width: int, num_tables: int, embedding_dim: int) -> int:
    """Width of the interaction output, i.e. the input width of the top MLP."""
    if kind == "cat":
        return dense_width + num_tables * embedding_dim
    if kind == "dot":
        return dense_width + (num_tables + 1) * num_tables // 2
    raise ValueError(f"Unknown interaction {kind!r}; expected one of {INTERACTIONS}.")


def interaction_flops(kind: str, num_tables: int, embedding_dim: int) -> int:
    """Floating-point operations of one sample's interaction (concatenation costs none).

    The dot interaction computes the whole (T + 1) x (T + 1) Gram matrix, of which it keeps the
    strict lower triangle; the count is what is computed.
    """
    if kind == "cat":
        return 0
    if kind == "dot":
        return 2 * (num_tables + 1) ** 2 * embedding_dim
    raise ValueError(f"Unknown interaction {kind!r}; expected one of {INTERACTIONS}.")


def interact(kind: str, dense: jax.Array, pooled: jax.Array) -> jax.Array:
    """Apply the interaction named `kind` ("cat" or "dot")."""
    if kind == "cat":
        return cat_interaction(dense, pooled)
    if kind == "dot":
        return dot_interaction(dense, pooled)
    raise ValueError(f"Unknown interaction {kind!r}; expected one of {INTERACTIONS}.")
