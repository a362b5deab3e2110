"""The eager PyTorch DLRM against recjax: same weights, same inputs, same outputs."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.data import synthetic_batch, to_device
from recjax.interop.reference_dlrm import expected_shapes, import_reference_state_dict
from recjax.layers.interaction import dot_interaction
from recjax.models.dlrm import DLRM
from recjax.runtime.inference import CompiledPredictor

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
torch_dlrm = pytest.importorskip("recjax.interop.torch_dlrm")


@pytest.mark.parametrize("interaction", ["cat", "dot"])
@pytest.mark.parametrize("name", ["rmc1-tiny", "rmc2-tiny", "rmc3-tiny"])
def test_torch_agrees_with_recjax_jit(name, interaction):
    config = dataclasses.replace(configs.get(name), interaction=interaction)
    model = DLRM(config, rngs=nnx.Rngs(1))
    batch = to_device(synthetic_batch(config, 16, seed=2))
    expected = np.asarray(CompiledPredictor(model, [16])(batch))
    predictor = torch_dlrm.TorchPredictor(model)
    got = predictor(predictor.prepare(batch))
    assert got.shape == (16,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)


def test_torch_module_has_the_reference_state_dict_layout():
    config = dataclasses.replace(configs.get("rmc1-tiny"), interaction="dot")
    module = torch_dlrm.TorchDLRM(config)
    shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert shapes == expected_shapes(config)
    assert [type(layer).__name__ for layer in module.top_l] == [
        "Linear",
        "ReLU",
        "Linear",
        "ReLU",
        "Linear",
        "Sigmoid",
    ]
    assert all(bag.mode == "sum" for bag in module.emb_l)


def test_import_accepts_torch_tensors():
    config = configs.get("rmc3-tiny")
    model = DLRM(config, rngs=nnx.Rngs(4))
    state_dict = torch_dlrm.TorchDLRM.from_recjax(model).state_dict()
    assert all(isinstance(value, torch.Tensor) for value in state_dict.values())
    imported = import_reference_state_dict(config, state_dict)
    for expected, got in zip(
        jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(imported)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def reference_interact_features(x, ly):
    """`DLRM_Net.interact_features` of facebookresearch/dlrm ("dot", no self-interaction)."""
    (batch_size, d) = x.shape
    T = torch.cat([x] + ly, dim=1).view((batch_size, -1, d))
    Z = torch.bmm(T, torch.transpose(T, 1, 2))
    _, ni, nj = Z.shape
    offset = 0
    li = torch.tensor([i for i in range(ni) for j in range(i + offset)])
    lj = torch.tensor([j for i in range(nj) for j in range(i + offset)])
    Zflat = Z[:, li, lj]
    return torch.cat([x] + [Zflat], dim=1)


def test_dot_interaction_order_matches_the_reference_dlrm():
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((3, 8), dtype=np.float32)
    pooled = rng.standard_normal((3, 5, 8), dtype=np.float32)
    expected = reference_interact_features(
        torch.from_numpy(dense), list(torch.from_numpy(pooled).unbind(1))
    ).numpy()
    got = np.asarray(jax.jit(dot_interaction)(dense, pooled))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_set_torch_threads_reports_both_counts():
    cores = torch_dlrm.usable_cores()
    assert torch_dlrm.set_torch_threads(cores) == {
        "torch_version": torch.__version__,
        "torch_num_threads": cores,
        "torch_num_interop_threads": cores,
    }
    with pytest.raises(ValueError, match="num_threads must be positive; got 0"):
        torch_dlrm.set_torch_threads(0)
