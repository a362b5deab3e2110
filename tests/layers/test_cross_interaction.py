"""The low-rank cross network against NumPy, its widths, FLOPs and refusals."""

import jax
import numpy as np
import pytest
from flax import nnx

from recjax.layers.interactions import INTERACTIONS, CrossInteraction, interaction_class


def random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def numpy_cross(dense, pooled, layers):
    """x_{l+1} = x_0 * (U_l (V_l x_l) + b_l) + x_l over x_0 = [dense, e_1, ..., e_T], per sample."""
    outputs = []
    for b in range(dense.shape[0]):
        x0 = np.concatenate([dense[b], *pooled[b]]).astype(np.float64)
        x = x0
        for u, v, bias in layers:
            x = x0 * (u @ (v @ x) + bias) + x
        outputs.append(x)
    return np.stack(outputs)


def test_cross_network_matches_numpy():
    dense, pooled = random((3, 5), 0), random((3, 4, 6), 1)
    cross = CrossInteraction(5, 4, 6, num_layers=2, rank=3, rngs=nnx.Rngs(0))
    layers = []
    for index, layer in enumerate(cross.layers):  # random biases: zeros would hide a missing one
        layer.bias[...] = random((29,), 10 + index)
        layers.append((np.asarray(layer.U[...]), np.asarray(layer.V[...]), layer.bias[...]))
    got = nnx.jit(lambda module, d, p: module(d, p))(cross, dense, pooled)
    np.testing.assert_allclose(got, numpy_cross(dense, pooled, layers), rtol=1e-5, atol=1e-5)
    assert [(u.shape, v.shape, np.shape(b)) for u, v, b in layers] == [
        ((29, 3), (3, 29), (29,))
    ] * 2


def test_widths_flops_and_parameters():
    options = {"num_layers": 3, "rank": 512}
    assert CrossInteraction.output_width(128, 26, 128, **options) == 3456
    # Per layer: V x (2 N r), U (V x) (2 N r), + b, * x_0, + x_l (N each).
    assert CrossInteraction.flops_per_sample(128, 26, 128, **options) == 3 * (
        4 * 3456 * 512 + 3 * 3456
    )
    abstract = nnx.eval_shape(lambda: CrossInteraction(128, 26, 128, **options, rngs=nnx.Rngs(0)))
    sizes = [leaf.size for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param))]
    assert sum(sizes) == 3 * (2 * 3456 * 512 + 3456)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_layers": 0, "rank": 4}, r"at least one layer.*num_layers=0, rank=4"),
        ({"num_layers": 2, "rank": 0}, r"rank of at least 1.*num_layers=2, rank=0"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        CrossInteraction(4, 2, 4, **options, rngs=nnx.Rngs(0))


def test_registered_with_its_options():
    assert INTERACTIONS["cross"] is interaction_class("cross") is CrossInteraction
    assert CrossInteraction.OPTIONS == ("num_layers", "rank")
