"""Post-training quantization against NumPy: the stored tables, the cast weights, the error."""

import dataclasses

import ml_dtypes
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.models.family import abstract_model, float32_config
from recjax.runtime.quantize import quantization_error, quantize_model
from tests.layers.quantized_rows import numpy_decode, numpy_encode

MIXED_DTYPES = ("int8", "int4", "float16", "bfloat16")


def mixed_config():
    """rmc1-tiny with per-table dtypes (four groups) and bfloat16 MLP kernels."""
    config = configs.get("rmc1-tiny")
    tables = tuple(
        dataclasses.replace(table, dtype=MIXED_DTYPES[index % 4])
        for index, table in enumerate(config.tables)
    )
    return dataclasses.replace(config, tables=tables, mlp_dtype="bfloat16")


def leaves(model):
    return {
        path: np.asarray(variable.get_value())
        for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }


def test_quantized_tables_and_weights_are_numpy_quantization_of_the_float32_ones():
    target = mixed_config()
    source = float32_config(target).build(nnx.Rngs(4))
    quantized = quantize_model(source, target)
    buffers = source.sparse_arch.table_buffers()
    stored = quantized.sparse_arch.table_buffers()
    assert sorted(stored) == sorted(f"d32_{dtype}" for dtype in MIXED_DTYPES)
    for table in target.tables:
        first = source.sparse_arch.table_offset[table.name]
        values = np.asarray(buffers["d32_float32"])[first : first + table.num_rows]
        group = quantized.sparse_arch.table_group[table.name]
        offset = quantized.sparse_arch.table_offset[table.name]
        rows = np.asarray(stored[group])[offset : offset + table.num_rows]
        np.testing.assert_array_equal(
            rows.view(np.uint8), numpy_encode(values, table.dtype).view(np.uint8)
        )
    source_leaves, quantized_leaves = leaves(source), leaves(quantized)
    for path, value in quantized_leaves.items():
        if "tables" in path:
            continue
        expected = source_leaves[path]
        if path[-1] == "kernel":
            assert value.dtype == ml_dtypes.bfloat16
            np.testing.assert_array_equal(value, expected.astype(ml_dtypes.bfloat16))
        else:
            assert value.dtype == np.float32
            np.testing.assert_array_equal(value, expected)


def test_building_a_quantized_config_equals_quantizing_the_float32_build():
    target = mixed_config()
    built = target.build(nnx.Rngs(5))
    quantized = quantize_model(float32_config(target).build(nnx.Rngs(5)), target)
    for (path, a), (_, b) in zip(
        sorted(leaves(built).items()), sorted(leaves(quantized).items()), strict=True
    ):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=str(path))


def test_abstract_model_counts_the_stored_bytes():
    """parameter_bytes (from the abstract model) = the tables' stored bytes + the MLP's."""
    target = mixed_config()
    state = nnx.state(abstract_model(target), nnx.Param)
    table_bytes = sum(
        int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
        for path, leaf in nnx.to_flat_state(state)
        if "tables" in path
        for leaf in [leaf.get_value()]
    )
    by_hand = sum(
        table.num_rows
        * {"int8": 32 + 8, "int4": 16 + 8, "float16": 64, "bfloat16": 64}[table.dtype]
        for table in target.tables
    )
    assert table_bytes == target.table_bytes == by_hand
    float32 = float32_config(target)
    mlp_weights = (float32.parameter_bytes - float32.table_bytes) // 4  # values
    biases = sum((*target.bottom_mlp, *target.top_mlp))
    assert target.parameter_bytes - target.table_bytes == 2 * (mlp_weights - biases) + 4 * biases
    assert target.cost()["embedding_bytes_per_sample"] == sum(
        feature.capacity * target.table(feature.table).row_bytes for feature in target.features
    )


def test_error_report_matches_numpy_pooling_of_the_dequantized_tables():
    target = dataclasses.replace(configs.get("rmc2-tiny"), table_dtype="int4")
    source = float32_config(target).build(nnx.Rngs(6))
    quantized = quantize_model(source, target)
    batch = to_device(synthetic_features(target, 8, seed=7))
    report = quantization_error(source, quantized, batch)
    values = np.asarray(source.sparse_arch.table_buffers()["d64_float32"], np.float64)
    stored = np.asarray(quantized.sparse_arch.table_buffers()["d64_int4"])
    decoded = numpy_decode(stored, "int4", 64)
    ids = np.asarray(batch.ids)
    for index, error in enumerate(report.tables[:3]):
        table = target.tables[index]
        offset = source.sparse_arch.table_offset[table.name]
        rows = ids[:, index * 120 : (index + 1) * 120] + offset  # [B, L]
        difference = np.abs(decoded[rows].sum(1) - values[rows].sum(1))
        assert error.table == table.name and error.dtype == "int4"
        assert error.max_abs_error == pytest.approx(difference.max(), rel=1e-3)
        assert error.mean_abs_error == pytest.approx(difference.mean(), rel=1e-3)
    logits = {
        name: np.asarray(model(batch)["click"]) for name, model in (("f", source), ("q", quantized))
    }
    assert report.max_abs_logit_difference["click"] == pytest.approx(
        np.abs(logits["f"] - logits["q"]).max(), rel=1e-6
    )
    probabilities = {
        name: 1 / (1 + np.exp(-value.astype(np.float64))) for name, value in logits.items()
    }
    assert report.max_abs_output_difference == pytest.approx(
        np.abs(probabilities["f"] - probabilities["q"]).max(), rel=1e-4
    )
    assert report.max_abs_output_difference > 0


def test_a_float32_target_is_a_copy_with_no_error():
    config = configs.get("rmc1-tiny")
    source = config.build(nnx.Rngs(1))
    report = quantization_error(
        source, quantize_model(source, config), synthetic_features(config, 4, 2)
    )
    assert all(error.max_abs_error == 0 for error in report.tables)
    assert report.max_abs_output_difference == 0


def test_configs_of_another_architecture_or_unstorable_values_are_refused():
    config = configs.get("rmc2-tiny")
    source = config.build(nnx.Rngs(0))
    with pytest.raises(ValueError, match="differ in more than their dtypes"):
        quantize_model(source, dataclasses.replace(config, top_mlp=(32, 1)))
    buffer = source.sparse_arch.tables["d64_float32"]
    buffer[...] = buffer[...].at[1005, 3].set(np.inf)  # a row of rmc2_table_1
    with pytest.raises(
        ValueError, match=r"table 'rmc2_table_1' cannot be stored as int8: it needs finite"
    ):
        quantize_model(source, dataclasses.replace(config, table_dtype="int8"))


def test_padded_int8_rows_hold_the_packed_rows():
    config = configs.get("rmc3-tiny")
    source = config.build(nnx.Rngs(2))
    packed = quantize_model(source, dataclasses.replace(config, table_dtype="int8"))
    padded = quantize_model(
        source, dataclasses.replace(config, table_dtype="int8", table_row_alignment=64)
    )
    packed_rows = np.asarray(packed.sparse_arch.table_buffers()["d32_int8"])
    padded_rows = np.asarray(padded.sparse_arch.table_buffers()["d32_int8_a64"])
    assert packed_rows.shape == (10_000, 40) and padded_rows.shape == (10_000, 64)
    np.testing.assert_array_equal(padded_rows[:, :40], packed_rows)
    assert not padded_rows[:, 40:].any()
    batch = synthetic_features(config, 4, seed=3)
    np.testing.assert_array_equal(
        np.asarray(padded(batch)["click"]), np.asarray(packed(batch)["click"])
    )
