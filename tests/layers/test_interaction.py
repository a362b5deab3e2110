import jax
import numpy as np
import pytest

from recjax.layers.interaction import (
    cat_interaction,
    dot_interaction,
    interact,
    interaction_width,
)


def random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_cat_interaction_matches_numpy():
    dense, pooled = random((3, 5), 0), random((3, 4, 6), 1)
    got = jax.jit(cat_interaction)(dense, pooled)
    expected = np.stack(
        [np.concatenate([dense[b], *[pooled[b, t] for t in range(4)]]) for b in range(3)]
    )
    np.testing.assert_array_equal(got, expected)
    assert got.shape[1] == interaction_width("cat", 5, 4, 6)


def test_dot_interaction_matches_explicit_pairs():
    dense, pooled = random((2, 6), 2), random((2, 3, 6), 3)
    got = jax.jit(dot_interaction)(dense, pooled)
    rows = []
    for b in range(2):
        features = [dense[b]] + [pooled[b, t] for t in range(3)]
        pairs = [features[i] @ features[j] for i in range(4) for j in range(i)]
        rows.append(np.concatenate([dense[b], np.asarray(pairs, np.float32)]))
    np.testing.assert_allclose(got, np.stack(rows), rtol=1e-5, atol=1e-6)
    assert got.shape[1] == interaction_width("dot", 6, 3, 6) == 6 + 6


def test_dot_interaction_needs_equal_widths():
    with pytest.raises(ValueError, match=r"bottom-MLP output width \(5\).*embedding dim \(6\)"):
        dot_interaction(random((2, 5), 0), random((2, 3, 6), 1))


def test_unknown_interaction_is_named():
    with pytest.raises(ValueError, match="'outer'.*cat.*dot"):
        interact("outer", random((2, 5), 0), random((2, 3, 5), 1))
