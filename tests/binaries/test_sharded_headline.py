"""The headline run: dcnv2-full-scaled (105 MiB of tables) over 4 processes of 64 MiB each.

Not part of the CI run (4 processes and a 3456-wide top MLP take minutes on 2 cores); run it with

    RECJAX_HEADLINE=1 python -m pytest -q tests/binaries/test_sharded_headline.py
"""

import json
import os

import pytest

from tests.binaries.binary import run_binary

BUDGET = 64 * 2**20


@pytest.mark.skipif(
    os.environ.get("RECJAX_HEADLINE") != "1", reason="minutes long: set RECJAX_HEADLINE=1"
)
def test_tables_no_process_could_hold_served_across_four(tmp_path):
    result = run_binary(
        "latency",
        "--model=dcnv2-full-scaled",
        "--processes=4",
        "--memory_per_process=64MiB",
        "--batch_sizes=64",
        "--min_iterations=3",
        "--warmup=1",
        f"--logdir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["cost"]["table_bytes"] > BUDGET  # the whole set exceeds one process's budget
    sharded = results["sharded"]
    assert len(sharded["table_bytes_per_process"]) == 4
    assert max(sharded["table_bytes_per_process"]) <= BUDGET
    assert results["unsharded"]["results"][0]["max_abs_difference_from_sharded"] < 1e-6
