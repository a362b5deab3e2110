import jax
import numpy as np
import pytest
from flax import nnx

from recjax.layers.mlp import MLP, mlp_flops


def numpy_mlp(x, kernels, biases, relu_last):
    for index, (kernel, bias) in enumerate(zip(kernels, biases, strict=True)):
        x = x @ kernel + bias
        if index < len(kernels) - 1 or relu_last:
            x = np.maximum(x, 0.0)
    return x


@pytest.mark.parametrize("relu_last", [True, False])
def test_mlp_matches_numpy(relu_last):
    mlp = MLP(12, (8, 5, 3), relu_last=relu_last, rngs=nnx.Rngs(1))
    # Non-zero biases, so that a dropped bias would show.
    for layer in mlp.layers:
        layer.bias[...] = jax.random.normal(jax.random.key(2), layer.bias.shape)
    x = np.random.default_rng(0).standard_normal((7, 12)).astype(np.float32)
    kernels = [np.asarray(layer.kernel[...]) for layer in mlp.layers]
    biases = [np.asarray(layer.bias[...]) for layer in mlp.layers]
    got = jax.jit(lambda module, inputs: module(inputs))(mlp, x)
    np.testing.assert_allclose(got, numpy_mlp(x, kernels, biases, relu_last), rtol=1e-5, atol=1e-6)
    if not relu_last:
        assert (np.asarray(got) < 0).any(), "a linear last layer should produce negative outputs"


def test_mlp_shapes_and_flops():
    mlp = MLP(256, (128, 64), relu_last=True, rngs=nnx.Rngs(0))
    assert [layer.kernel[...].shape for layer in mlp.layers] == [(256, 128), (128, 64)]
    assert mlp_flops(256, (128, 64)) == 2 * (256 * 128 + 128 * 64)


def test_mlp_rejects_no_layers():
    with pytest.raises(ValueError, match="at least one layer"):
        MLP(4, (), relu_last=True, rngs=nnx.Rngs(0))
