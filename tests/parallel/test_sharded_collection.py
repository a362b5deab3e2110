"""Each sharding type equals the unsharded lookup and NumPy, on 4 simulated devices.

The check runs in a subprocess (tests/parallel/sharded_lookup_check.py): the device count is fixed
when JAX starts. One run covers every type on a 2x2 (host, local) mesh and a mixed plan on 1x4
and 4x1, for fixed, ragged, mean, weighted and sequence features.
"""

import pytest

from tests.parallel.simulated import run_on_devices

TYPES = ("data_parallel", "table_wise", "column_wise", "row_wise", "table_row_wise")
EXPECTED_COLLECTIVES = {
    "data_parallel": [],
    "table_wise": ["all-to-all"],
    "column_wise": ["all-to-all"],
    # Row-wise partial sums are reduce-scattered by an all-to-all and a local sum (not XLA's
    # reduce-scatter: see sharded_collection._reduce_scatter).
    "row_wise": ["all-to-all"],
    "table_row_wise": ["all-to-all"],
    "mixed": ["all-to-all"],
}
CASES = [f"2x2/{kind}" for kind in TYPES] + ["2x2/mixed", "1x4/mixed", "4x1/mixed"]


@pytest.fixture(scope="module")
def results():
    return run_on_devices("tests.parallel.sharded_lookup_check", 4, "--lowering=gather_sum")


@pytest.mark.parametrize("case", CASES)
def test_equals_unsharded_and_numpy(results, case):
    result = results[case]
    assert result["shapes_match"] and result["output_sharded"]
    assert result["vs_collection"] < 1e-6
    assert result["vs_numpy"] < 1e-6


@pytest.mark.parametrize("case", CASES)
def test_compiled_program_has_only_the_expected_collectives(results, case):
    # No all-gather (of a table or anything else) and no all-reduce of unpooled rows.
    assert results[case]["collectives"] == EXPECTED_COLLECTIVES[case.split("/")[1]]


def test_the_collective_check_sees_an_automatically_partitioned_gather(results):
    # A gather from a row-sharded table left to XLA's partitioner: it all-gathers or all-reduces.
    assert {"all-gather", "all-reduce"} & set(results["naive"]["collectives"])


@pytest.mark.parametrize("lowering", ["pooling_loop", "native"])
def test_other_lowerings_run_inside_shard_map(lowering):
    if lowering == "native":
        from recjax import native

        available, detail = native.availability()
        if not available:
            pytest.skip(detail)
    results = run_on_devices(
        "tests.parallel.sharded_lookup_check",
        4,
        f"--lowering={lowering}",
        "--meshes=2x2",
        "--mixed_only",
    )
    assert max(result["vs_numpy"] for case, result in results.items() if case != "naive") < 1e-6
