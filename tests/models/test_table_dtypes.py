"""Table and MLP dtypes through the config: overrides, validation, and the bytes reports count."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.features import TABLE_DTYPES
from recjax.inputs.synthetic import synthetic_features
from recjax.models.family import abstract_model, float32_config
from recjax.models.overrides import apply_overrides
from recjax.runtime.memory import estimated_peak_bytes

# Bytes of one stored row of dim D, by hand (quantized rows: codes, float32 scale and bias).
ROW_BYTES = {
    "float32": lambda d: 4 * d,
    "float16": lambda d: 2 * d,
    "bfloat16": lambda d: 2 * d,
    "int8": lambda d: d + 8,
    "int4": lambda d: (d + 1) // 2 + 8,
}


@pytest.mark.parametrize("dtype", TABLE_DTYPES)
@pytest.mark.parametrize("name", ["rmc1", "rmc2", "rmc3"])
def test_full_presets_count_the_stored_bytes_shape_only(name, dtype):
    config = apply_overrides(configs.get(name), [f"table_dtype={dtype}"])
    assert {table.dtype for table in config.tables} == {dtype}
    state = nnx.state(abstract_model(config), nnx.Param)  # nothing allocated
    buffers = dict(state["sparse_arch"]["tables"].items())
    dim = config.tables[0].dim
    (group,) = buffers
    assert group == f"d{dim}_{dtype}"
    buffer = buffers[group].get_value()
    rows = sum(table.num_rows for table in config.tables)
    by_hand = rows * ROW_BYTES[dtype](dim)
    assert int(np.prod(buffer.shape)) * np.dtype(buffer.dtype).itemsize == by_hand
    assert config.table_bytes == by_hand == config.cost()["table_bytes"]
    dense_bytes = float32_config(config).parameter_bytes - float32_config(config).table_bytes
    assert config.parameter_bytes == by_hand + dense_bytes
    per_sample = sum(feature.capacity for feature in config.features) * ROW_BYTES[dtype](dim)
    assert config.cost()["embedding_bytes_per_sample"] == per_sample
    assert estimated_peak_bytes(config, 1024) > config.parameter_bytes


def test_int8_rmc2_tables_are_the_issue_s_size():
    """32 x 500,000 rows of 72 bytes: 1.15 GB, 28 % of the float32 4.1 GB."""
    config = apply_overrides(configs.get("rmc2"), ["table_dtype=int8"])
    assert config.table_bytes == 1_152_000_000
    assert config.table_bytes / configs.get("rmc2").table_bytes == pytest.approx(72 / 256)


def test_bfloat16_mlp_halves_the_kernel_bytes_of_rmc3():
    float32 = configs.get("rmc3")
    bfloat16 = apply_overrides(float32, ["mlp_dtype=bfloat16"])
    widths = (2560, 1024, 256, 32), (float32.top_mlp_in_features, 512, 256, 1)
    kernels = sum(a * b for layer in widths for a, b in zip(layer[:-1], layer[1:], strict=True))
    assert float32.parameter_bytes - bfloat16.parameter_bytes == 2 * kernels


def test_a_table_dtype_applies_to_every_table_and_survives_replace():
    config = dataclasses.replace(configs.get("rmc1-tiny"), table_dtype="int4")
    assert {table.dtype for table in config.tables} == {"int4"}
    assert {table.dtype for table in configs.tiny(config).tables} == {"int4"}
    assert float32_config(config).tables == configs.get("rmc1-tiny").tables
    mixed = dataclasses.replace(
        configs.get("rmc1-tiny"),
        tables=tuple(
            dataclasses.replace(table, dtype="int8" if index % 2 else "float16")
            for index, table in enumerate(configs.get("rmc1-tiny").tables)
        ),
    )
    model = mixed.build(nnx.Rngs(0))
    assert sorted(model.sparse_arch.table_buffers()) == ["d32_float16", "d32_int8"]
    logits = jax.jit(lambda m, b: m(b))(model, synthetic_features(mixed, 3, seed=0))["click"]
    assert np.all(np.isfinite(np.asarray(logits)))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["table_dtype=int3"], r"unknown table_dtype 'int3'; expected one of \('float32'"),
        (["mlp_dtype=int8"], r"mlp_dtype 'int8' is not supported by DLRMConfig; expected one of"),
    ],
)
def test_bad_dtypes_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(configs.get("rmc2-tiny"), overrides)


def test_row_alignment_pads_every_table_and_names_its_group():
    config = apply_overrides(
        configs.get("rmc1-tiny"), ["table_dtype=int8", "table_row_alignment=64"]
    )
    assert {(table.dtype, table.row_alignment) for table in config.tables} == {("int8", 64)}
    assert config.table_bytes == 8 * 1_000 * 64
    assert config.cost()["embedding_bytes_per_sample"] == 8 * 80 * 64
    (group,) = nnx.state(abstract_model(config), nnx.Param)["sparse_arch"]["tables"].keys()
    assert group == "d32_int8_a64"
    assert float32_config(config).tables == configs.get("rmc1-tiny").tables
    with pytest.raises(ValueError, match="table_row_alignment='x'; table_row_alignment takes an"):
        apply_overrides(configs.get("rmc1-tiny"), ["table_row_alignment=x"])
