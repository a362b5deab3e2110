import dataclasses
import json
import os

import pytest

import configs
from recjax.inputs.features import FeatureConfig
from recjax.reporting.logdir import prepare_logdir, write_json
from recjax.runtime.memory import (
    GIB,
    InsufficientMemoryError,
    batch_input_bytes,
    check_memory,
    estimated_peak_bytes,
)


def mlp_bytes(widths):
    """float32 weights and biases of dense layers widths[0] -> widths[1] -> ..."""
    return 4 * sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


# name: (parameters, largest table, F, K, C, D), from the preset files and the paper's Table I.
HAND = {
    "rmc1": (
        8 * 4_000_000 * 32 * 4 + mlp_bytes([128, 64, 32]) + mlp_bytes([32 + 8 * 32, 256, 64, 1]),
        4_000_000 * 32 * 4,
        128,
        8,
        80,
        32,
    ),
    "rmc2": (
        32 * 500_000 * 64 * 4 + mlp_bytes([256, 128, 64]) + mlp_bytes([64 + 32 * 64, 128, 64, 1]),
        500_000 * 64 * 4,
        256,
        32,
        120,
        64,
    ),
    "rmc3": (
        10 * 2_000_000 * 32 * 4
        + mlp_bytes([2560, 1024, 256, 32])
        + mlp_bytes([32 + 10 * 32, 512, 256, 1]),
        2_000_000 * 32 * 4,
        2560,
        10,
        20,
        32,
    ),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_estimate_by_hand(name):
    config = configs.get(name)
    parameters, largest_table, dense, features, capacity, dim = HAND[name]
    batch = 1024
    initialization = 3 * largest_table  # random bits, values, block of the largest table
    inputs = batch * (dense + features * capacity) * 4  # dense [B, F] f32, ids [B, K * C] i32
    inputs += batch * features * 4  # lengths [B, K] i32
    gathered = batch * features * capacity * dim * 4  # one [B, T, C, D] gather
    expected = parameters + initialization + inputs + gathered + GIB
    assert config.parameter_bytes == parameters
    assert batch_input_bytes(config, batch) == inputs
    assert estimated_peak_bytes(config, max_batch_size=batch) == expected


def test_estimate_counts_weights_ragged_capacities_and_the_largest_table_in_bytes():
    base = configs.get("rmc2-tiny")  # 32 tables x 1,000 rows x 64 dim
    tables = (
        dataclasses.replace(base.tables[0], num_rows=10),
        dataclasses.replace(base.tables[1], num_rows=3_000),
    )
    features = (
        FeatureConfig("a", tables[0].name, capacity=5, weighted=True),
        FeatureConfig("b", tables[1].name, capacity=7, pooling="mean", fixed_length=False),
        FeatureConfig("c", tables[1].name, capacity=2),
    )
    config = dataclasses.replace(base, tables=tables, features=features)
    batch = 8
    ids = batch * (5 + 7 + 2) * 4
    weights = batch * (5 + 7 + 2) * 4  # one [B, sum C] f32 block once any feature is weighted
    assert batch_input_bytes(config, batch) == batch * 256 * 4 + ids + batch * 3 * 4 + weights
    expected = (
        config.parameter_bytes
        + 3 * 3_000 * 64 * 4
        + batch_input_bytes(config, batch)
        + batch * (5 + 7 + 2) * 64 * 4
        + GIB
    )
    assert estimated_peak_bytes(config, batch) == expected


def test_estimate_of_quantized_tables_counts_stored_and_float32_bytes():
    """rmc2 int8: 72-byte rows stored and gathered, float32 init block and widened rows."""
    config = dataclasses.replace(configs.get("rmc2"), table_dtype="int8")
    batch = 256
    tables = 32 * 500_000 * (64 + 8)
    assert config.table_bytes == tables
    assert (
        config.parameter_bytes
        == tables + configs.get("rmc2").parameter_bytes - 4 * 32 * 500_000 * 64
    )
    expected = (
        config.parameter_bytes
        + 3 * 500_000 * 64 * 4  # the largest table's init, in float32
        + batch_input_bytes(config, batch)
        + batch * 32 * 120 * ((64 + 8) + 64 * 4)  # gathered int8 rows and their float32 values
        + GIB
    )
    assert estimated_peak_bytes(config, batch) == expected


def test_check_memory_refuses_naming_both_numbers():
    config = configs.get("rmc2")
    with pytest.raises(InsufficientMemoryError) as error:
        check_memory(config, 1024, ["rmc2-tiny"], available_bytes=2 * GIB)
    message = str(error.value)
    needed = estimated_peak_bytes(config, 1024) / GIB
    assert f"needs about {needed:.1f} GiB" in message
    assert "only 2.0 GiB of memory is available" in message
    assert "rmc2-tiny" in message
    assert check_memory(config, 1, [], available_bytes=100 * GIB) == estimated_peak_bytes(config, 1)


def test_prepare_logdir_refuses_an_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="not writable"):
        prepare_logdir(str(blocker / "run"))
    assert prepare_logdir(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
    assert os.listdir(tmp_path / "a" / "b") == []  # the write check leaves nothing behind


def test_write_json_replaces_whole_files(tmp_path):
    path = tmp_path / "results.json"
    write_json(str(path), {"a": 1})
    write_json(str(path), {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert os.listdir(tmp_path) == ["results.json"]


def test_extra_parameter_copies_are_counted_and_named():
    config = configs.get("rmc1")
    single = estimated_peak_bytes(config, max_batch_size=64)
    assert check_memory(config, 64, [], 100 * GIB, extra_parameter_copies=1) == (
        single + config.parameter_bytes
    )
    with pytest.raises(InsufficientMemoryError, match=r"of parameters, held 2 times\), but only"):
        check_memory(config, 64, [], available_bytes=single + GIB, extra_parameter_copies=1)
    assert check_memory(config, 64, [], available_bytes=single + GIB) == single
    with pytest.raises(ValueError, match="extra_parameter_copies must be >= 0; got -1"):
        check_memory(config, 64, [], 100 * GIB, extra_parameter_copies=-1)
    assert check_memory(config, 64, [], 100 * GIB, extra_bytes=GIB) == single + GIB
    with pytest.raises(InsufficientMemoryError, match=r"parameters, and 1.0 GiB beside them\)"):
        check_memory(config, 64, [], available_bytes=single + GIB // 2, extra_bytes=GIB)
