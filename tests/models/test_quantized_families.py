"""Every family's tiny preset with int8 tables, through the contract only."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.models.family import float32_config
from recjax.models.registry import family_of
from recjax.runtime.quantize import quantization_error, quantize_model

TINY = sorted(name for name in configs.names() if name.endswith(configs.TINY_SUFFIX))


@pytest.mark.parametrize("name", TINY)
def test_int8_tables_of_every_family_quantize_and_run(name):
    config = dataclasses.replace(configs.get(name), table_dtype="int8")
    source = float32_config(config).build(nnx.Rngs(0))
    quantized = quantize_model(source, config)
    assert all(
        buffer.dtype == np.uint8 for buffer in quantized.sparse_arch.table_buffers().values()
    )
    report = quantization_error(source, quantized, to_device(synthetic_features(config, 3, 1)))
    read = {feature.table for feature in config.features}
    assert {error.table for error in report.tables} == read
    for error in report.tables:
        assert error.dtype == "int8"
        # at most half a step per row, summed over a bag: a few hundredths of a pooled value
        assert error.max_abs_error <= 0.05 * max(error.max_abs_value, 1e-3)
    assert report.max_abs_output_difference < 0.02


def test_families_without_bfloat16_mlps_refuse_it():
    unsupported = [name for name in TINY if "bfloat16" not in type(configs.get(name)).MLP_DTYPES]
    for name in unsupported:
        with pytest.raises(ValueError, match=r"mlp_dtype 'bfloat16' is not supported by"):
            dataclasses.replace(configs.get(name), mlp_dtype="bfloat16")
    assert {family_of(configs.get(name)) for name in TINY} - {
        family_of(configs.get(name)) for name in unsupported
    } >= {"dlrm"}
