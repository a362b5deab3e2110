import jax
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from recjax import native
from recjax.layers.mlp import BFLOAT16_NATIVE_MAX_BATCH, MLP, mlp_flops


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


@pytest.mark.parametrize("batch", [1, BFLOAT16_NATIVE_MAX_BATCH, BFLOAT16_NATIVE_MAX_BATCH + 1])
def test_bfloat16_kernels_are_the_float32_ones_rounded_and_widened_as_read(batch):
    mlp32 = MLP(12, (8, 5, 3), relu_last=False, rngs=nnx.Rngs(3))
    mlp16 = MLP(12, (8, 5, 3), relu_last=False, rngs=nnx.Rngs(3), param_dtype="bfloat16")
    for layer in mlp32.layers:
        layer.bias[...] = jax.random.normal(jax.random.key(4), layer.bias.shape)
    for layer, source in zip(mlp16.layers, mlp32.layers, strict=True):
        layer.bias[...] = source.bias[...]
    kernels = [np.asarray(layer.kernel[...]) for layer in mlp16.layers]
    assert all(kernel.dtype == ml_dtypes.bfloat16 for kernel in kernels)
    for kernel, source in zip(kernels, mlp32.layers, strict=True):
        np.testing.assert_array_equal(kernel, np.asarray(source.kernel[...]).astype(kernel.dtype))
    biases = [np.asarray(layer.bias[...]) for layer in mlp16.layers]
    assert all(bias.dtype == np.float32 for bias in biases)
    x = np.random.default_rng(batch).standard_normal((batch, 12)).astype(np.float32)
    got = jax.jit(lambda module, inputs: module(inputs))(mlp16, x)
    assert got.dtype == np.float32
    expected = numpy_mlp(
        x.astype(np.float64), [k.astype(np.float64) for k in kernels], biases, False
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_bfloat16_gemv_reads_its_kernel_without_a_float32_copy():
    """At batch 1 no float32 [in, out] kernel appears in the compiled program (XLA:CPU's dot of a
    bfloat16 kernel widens it into one first: see BFLOAT16_NATIVE_MAX_BATCH): the native kernel
    reads the bfloat16 kernel itself."""
    if not native.availability()[0]:
        pytest.skip(f"native library unavailable: {native.availability()[1]}")
    mlp = MLP(512, (384,), relu_last=True, rngs=nnx.Rngs(0), param_dtype="bfloat16")
    compiled = (
        jax.jit(lambda module, inputs: module(inputs))
        .lower(mlp, np.ones((1, 512), np.float32))
        .compile()
        .as_text()
    )
    # The top-level program's buffers: a widened kernel inside a fusion is never materialized.
    entry = compiled[compiled.index("ENTRY") :]
    assert "bf16[512,384]" in entry
    assert "f32[512,384]" not in entry
    assert native.MATMUL_FFI_TARGET in entry


@pytest.mark.parametrize(("batch", "inputs", "outputs"), [(1, 7, 5), (3, 64, 64), (9, 33, 200)])
def test_native_bfloat16_matmul_matches_numpy(batch, inputs, outputs):
    if not native.availability()[0]:
        pytest.skip(f"native library unavailable: {native.availability()[1]}")
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, inputs)).astype(np.float32)
    kernel = rng.standard_normal((inputs, outputs)).astype(ml_dtypes.bfloat16)
    got = np.asarray(jax.jit(native.bfloat16_matmul)(x, kernel))
    wide = kernel.astype(np.float64)
    expected = x.astype(np.float64) @ wide
    bound = np.abs(x).astype(np.float64) @ np.abs(wide) * inputs * np.finfo(np.float32).eps
    assert got.shape == (batch, outputs) and got.dtype == np.float32
    assert np.all(np.abs(got - expected) <= bound)


def test_mlp_rejects_an_unknown_param_dtype():
    with pytest.raises(ValueError, match=r"Unknown MLP param_dtype 'int8'; expected one of \("):
        MLP(4, (2,), relu_last=True, rngs=nnx.Rngs(0), param_dtype="int8")
