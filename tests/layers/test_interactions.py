import jax
import numpy as np
import pytest
from flax import nnx

from recjax.layers.interactions import (
    INTERACTIONS,
    CatInteraction,
    DotInteraction,
    interaction_class,
)


def random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_cat_interaction_matches_numpy():
    dense, pooled = random((3, 5), 0), random((3, 4, 6), 1)
    got = jax.jit(lambda d, p: CatInteraction(5, 4, 6, rngs=nnx.Rngs(0))(d, p))(dense, pooled)
    expected = np.stack(
        [np.concatenate([dense[b], *[pooled[b, t] for t in range(4)]]) for b in range(3)]
    )
    np.testing.assert_array_equal(got, expected)
    assert got.shape[1] == CatInteraction.output_width(5, 4, 6) == 29
    assert CatInteraction.flops_per_sample(5, 4, 6) == 0


def test_dot_interaction_matches_explicit_pairs():
    dense, pooled = random((2, 6), 2), random((2, 3, 6), 3)
    got = jax.jit(lambda d, p: DotInteraction(6, 3, 6, rngs=nnx.Rngs(0))(d, p))(dense, pooled)
    rows = []
    for b in range(2):
        features = [dense[b]] + [pooled[b, t] for t in range(3)]
        pairs = [features[i] @ features[j] for i in range(4) for j in range(i)]
        rows.append(np.concatenate([dense[b], np.asarray(pairs, np.float32)]))
    np.testing.assert_allclose(got, np.stack(rows), rtol=1e-5, atol=1e-6)
    assert got.shape[1] == DotInteraction.output_width(6, 3, 6) == 6 + 6
    assert DotInteraction.flops_per_sample(6, 3, 6) == 2 * 4 * 4 * 6  # the whole 4 x 4 Gram matrix


def test_dot_interaction_needs_equal_widths():
    with pytest.raises(ValueError, match=r"dense width \(5\).*embedding dim \(6\)"):
        DotInteraction(5, 3, 6, rngs=nnx.Rngs(0))


def test_registry_names_the_unknown_interaction():
    assert {"cat", "dot"} <= set(INTERACTIONS)
    with pytest.raises(ValueError, match=r"'outer'.*\['cat', 'cross', 'dot'\]"):
        interaction_class("outer")
