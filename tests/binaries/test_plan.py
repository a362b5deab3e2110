"""benchmarks.plan end to end: the headline plan of dcnv2-full, and a plan that cannot fit."""

import json

from tests.binaries.binary import run_binary


def test_prints_the_plan_and_writes_results(tmp_path):
    result = run_binary(
        "plan", "--model=dcnv2-full", "--hosts=8", "--memory_per_host=24GiB", f"--logdir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr
    assert "97.36 GiB of tables in 26 tables" in result.stdout
    assert "20.40 GiB per device for tables (15% reserved)" in result.stdout
    table_lines = [line for line in result.stdout.splitlines() if line.startswith("t_cat_")]
    assert len(table_lines) == 26
    results = json.loads((tmp_path / "results.json").read_text())
    plan = results["plan"]
    assert results["model"] == "dcnv2-full"
    assert len(plan["tables"]) == 26 and len(plan["devices"]) == 8
    assert max(d["table_bytes"] for d in plan["devices"]) <= plan["usable_per_device"]


def test_a_plan_that_cannot_fit_exits_with_the_shortfall(tmp_path):
    result = run_binary(
        "plan", "--model=dcnv2-full", "--hosts=4", "--memory_per_host=24GiB", f"--logdir={tmp_path}"
    )
    assert result.returncode != 0
    assert "no plan fits" in result.stderr and "short by 15.76 GiB" in result.stderr


def test_a_bad_size_is_named():
    result = run_binary("plan", "--model=rmc2-tiny", "--memory_per_host=lots")
    assert result.returncode != 0
    assert "Cannot read 'lots' as a size" in result.stderr
