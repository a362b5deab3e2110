"""TorchRec's int8 quantized inference against recjax's int8 jit: same weights, same inputs.

TorchRec quantizes the tables it is given (read as float32 from the recjax model) with FBGEMM's
own row-wise quantizer: float16 scale and bias, codes rounded to the nearest step. Loaded from a
recjax int8 model, its rows hold the recjax rows' values re-quantized: each value within
0.75 x scale + 2^-10 x |bias| of recjax's (half a step, plus the float16 rounding of the scale
over 255 steps and of the bias; docs/design/quantized-tables.md). The pooled vectors are held to
the sum of that bound over each bag's rows, and the probabilities to 1e-3 (observed: below
1.3e-4 on the tiny presets at batch 16).
"""

import dataclasses

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.checks import InvalidInputError
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.runtime.inference import CompiledPredictor
from tests.layers.quantized_rows import code_bytes

torchrec_twins = pytest.importorskip("recjax.interop.torchrec_twins")
try:
    torchrec_twins.require_torchrec()
except ImportError as error:
    pytest.skip(f"torchrec is an optional extra: {error}", allow_module_level=True)
torch = pytest.importorskip("torch")
torchrec_dlrm = pytest.importorskip("recjax.interop.torchrec_dlrm")

PROBABILITY_TOLERANCE = 1e-3


def int8_model(name, interaction="cat", seed=1):
    config = dataclasses.replace(configs.get(name), interaction=interaction, table_dtype="int8")
    return config.build(nnx.Rngs(seed))


@pytest.mark.parametrize("interaction", ["cat", "dot"])
@pytest.mark.parametrize("name", ["rmc1-tiny", "rmc2-tiny", "rmc3-tiny"])
def test_torchrec_int8_agrees_with_jit_int8(name, interaction):
    model = int8_model(name, interaction)
    batch = to_device(synthetic_features(model.config, 16, seed=2))
    expected = np.asarray(CompiledPredictor(model, [16])(batch)["click"])
    predictor = torchrec_twins.torchrec_predictor(model)
    for got in (predictor(batch), predictor(predictor.prepare(batch))):
        assert set(got) == {"click"}
        assert got["click"].shape == (16,) and got["click"].dtype == np.float32
        np.testing.assert_allclose(got["click"], expected, rtol=0, atol=PROBABILITY_TOLERANCE)


def test_torchrec_pooled_vectors_are_within_half_a_step_of_recjax_per_row():
    model = int8_model("rmc2-tiny")
    batch = synthetic_features(model.config, 8, seed=3)
    predictor = torchrec_twins.torchrec_predictor(model)
    # The collection was swapped for TorchRec's quantized one, holding uint8 rows.
    from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantCollection

    assert isinstance(predictor.module.sparse_arch, QuantCollection)
    assert {buffer.dtype for _, buffer in predictor.module.sparse_arch.named_buffers()} >= {
        torch.uint8
    }
    with torch.inference_mode():
        got = predictor.module.sparse_arch(predictor.prepare(batch).sparse).values().numpy()
    pooled = nnx.jit(lambda m, b: m.embed(b))(model, to_device(batch))  # [B, T, D]
    stored = np.asarray(model.sparse_arch.table_buffers()["d64_int8"])
    scale_bias = np.ascontiguousarray(stored[:, code_bytes("int8", 64) :]).view("<f4")
    row_bound = 0.75 * scale_bias[:, 0] + 2.0**-10 * np.abs(scale_bias[:, 1]) + 1e-7
    ids = np.asarray(batch.ids).reshape(8, 32, 120) + 1000 * np.arange(32)[None, :, None]
    bound = row_bound[ids].sum(axis=2)  # [B, T]
    difference = np.abs(got.reshape(8, 32, 64) - np.asarray(pooled)).max(axis=2)
    assert np.all(difference <= bound)
    assert difference.max() > 0  # two quantizations: not the same values


def test_a_float32_model_is_quantized_by_torchrec_itself():
    config = configs.get("rmc3-tiny")
    model = config.build(nnx.Rngs(4))
    batch = to_device(synthetic_features(config, 4, seed=5))
    expected = np.asarray(CompiledPredictor(model, [4])(batch)["click"])
    got = torchrec_twins.torchrec_predictor(model)(batch)["click"]
    difference = np.abs(got - expected)
    assert 0 < difference.max() <= PROBABILITY_TOLERANCE


def test_invalid_inputs_and_unsupported_features_are_refused():
    model = int8_model("rmc1-tiny")
    predictor = torchrec_twins.torchrec_predictor(model)
    batch = synthetic_features(model.config, 2, seed=0)
    ids = np.array(batch.ids)
    ids[0, 0] = 10_000
    with pytest.raises(InvalidInputError, match="rmc1-tiny"):
        predictor.prepare(dataclasses.replace(batch, ids=ids))
    config = configs.get("rmc1-tiny")
    features = list(config.features)
    features[1] = dataclasses.replace(features[1], pooling="mean")
    config = dataclasses.replace(config, features=tuple(features))
    with pytest.raises(ValueError, match=r"'rmc1_table_1' \(pooling='mean'\)"):
        torchrec_dlrm.TorchRecDLRM(config)
