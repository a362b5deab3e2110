"""Every family's PyTorch twin on a model with int8 tables: the twin reads the tables as float32
(decoded), so it computes what recjax's int8 model computes."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.interop.tables import filled_group, table_views
from recjax.interop.torch_twins import has_torch_twin
from recjax.models.family import abstract_model
from recjax.runtime.inference import CompiledPredictor
from tests.layers.quantized_rows import numpy_decode, numpy_encode

TINY = sorted(
    name
    for name in configs.names()
    if name.endswith(configs.TINY_SUFFIX) and has_torch_twin(configs.get(name))
)


def test_table_helpers_decode_and_encode_stored_tables():
    config = dataclasses.replace(configs.get("rmc1-tiny"), table_dtype="int8")
    model = config.build(nnx.Rngs(0))
    collection = model.sparse_arch
    stored = np.asarray(collection.table_buffers()["d32_int8"])
    views = table_views(collection)
    for table in config.tables:
        first = collection.table_offset[table.name]
        expected = numpy_decode(stored[first : first + table.num_rows], "int8", 32)
        np.testing.assert_allclose(views[table.name], expected, rtol=1e-6, atol=1e-9)
    abstract = abstract_model(config).sparse_arch
    refilled = filled_group(abstract, "d32_int8", stored.shape, np.uint8, views)
    again = np.asarray(refilled)
    # Re-quantizing decoded values keeps the codes; the scale may move by a float32 ulp.
    first_codes = stored[:, :32].astype(int)
    assert np.abs(again[:, :32].astype(int) - first_codes).max() <= 1
    np.testing.assert_allclose(
        numpy_decode(again, "int8", 32), numpy_decode(stored, "int8", 32), rtol=0, atol=1e-6
    )
    values = np.random.default_rng(0).standard_normal((1000, 32)).astype(np.float32)
    one = filled_group(abstract, "d32_int8", stored.shape, np.uint8, dict.fromkeys(views, values))
    np.testing.assert_array_equal(np.asarray(one)[:1000], numpy_encode(values, "int8"))


@pytest.mark.parametrize("name", TINY)
def test_every_twin_runs_an_int8_model(name):
    pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
    from recjax.interop.torch_twins import torch_predictor

    config = dataclasses.replace(configs.get(name), table_dtype="int8")
    model = config.build(nnx.Rngs(1))
    batch = to_device(synthetic_features(config, 8, seed=2))
    expected = CompiledPredictor(model, [8])(batch)
    got = torch_predictor(model)(batch)
    for head, probabilities in expected.items():
        np.testing.assert_allclose(got[head], np.asarray(probabilities), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["rmc2-tiny", "dcnv2-tiny"])
def test_twins_of_bfloat16_mlps_widen_the_kernels(name):
    pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
    from recjax.interop.torch_twins import torch_predictor

    config = dataclasses.replace(configs.get(name), mlp_dtype="bfloat16", table_dtype="int4")
    model = config.build(nnx.Rngs(3))
    batch = to_device(synthetic_features(config, 4, seed=4))
    expected = CompiledPredictor(model, [4])(batch)
    got = torch_predictor(model)(batch)
    for head, probabilities in expected.items():
        np.testing.assert_allclose(got[head], np.asarray(probabilities), rtol=1e-4, atol=1e-6)
