"""Every parameter of a model redrawn at random, so that a reference comparison sees each one
(zero biases would hide a missing bias)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def with_random_parameters(model: nnx.Module, seed: int, scale: float = 0.1) -> nnx.Module:
    """A copy of `model` with every parameter uniform in [-scale, scale)."""
    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree.flatten(state)
    rng = np.random.default_rng(seed)
    drawn = [
        jnp.asarray(rng.uniform(-scale, scale, np.shape(leaf)).astype(np.float32))
        for leaf in leaves
    ]
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, drawn))
