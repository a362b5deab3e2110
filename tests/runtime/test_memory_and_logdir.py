import json
import os

import pytest

import configs
from recjax.reporting.logdir import prepare_logdir, write_json
from recjax.runtime.memory import GIB, InsufficientMemoryError, check_memory, estimated_peak_bytes


def test_estimate_by_hand():
    config = configs.get("rmc2")
    parameters = 4_096_000_000 + 4 * (256 * 128 + 128 + 128 * 64 + 64)  # tables, bottom MLP
    parameters += 4 * (2112 * 128 + 128 + 128 * 64 + 64 + 64 * 1 + 1)  # top MLP
    initialization = 3 * 500_000 * 64 * 4  # random bits, values, block of the largest table
    inputs = 1024 * (256 + 32 * 120) * 4
    gathered = 1024 * 32 * 120 * 64 * 4  # one [B, T, L, D] gather
    expected = parameters + initialization + inputs + gathered + GIB
    assert estimated_peak_bytes(config, max_batch_size=1024) == expected


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
