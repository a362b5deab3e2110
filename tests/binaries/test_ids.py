"""--ids end to end: a generated trace profiled by benchmarks.ids_profile, regenerated in a latency
run with its locality reported; and the refusals of bad --ids values before any work."""

import json

import numpy as np
import pytest

from recjax.inputs import stack_distances
from tests.binaries.binary import run_binary
from tests.binaries.test_latency import FAST
from tests.inputs import reference_dlrm_traces as reference


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ids")
    trace, profile = folder / "trace.log", folder / "profile.log"
    result = run_binary(
        "ids_profile",
        "--generate=zipf:1.2",
        "--rows=1000",
        "--lookups=5000",
        f"--trace={trace}",
        f"--out={profile}",
    )
    assert result.returncode == 0, result.stderr
    assert f"5,000 ids drawn from zipf:1.2 over 1,000 rows (seed 0) written to {trace}" in (
        result.stdout
    )
    assert f"use it with --ids=trace:{profile}" in result.stdout
    return trace, profile


def test_profile_command_writes_the_reference_formats(profile_path, tmp_path):
    trace, profile = profile_path
    ids = reference.read_trace_from_file(trace)
    assert len(ids) == 5000 and max(ids) < 1000
    unique, distances, cumulative = reference.read_dist_from_file(profile)
    expected_unique, expected_distances, expected_cumulative = reference.profile_lists(ids)
    assert (unique, distances) == (expected_unique, expected_distances)
    assert cumulative == pytest.approx(expected_cumulative, rel=1e-12)
    # And a binary trace gives the same profile.
    binary = tmp_path / "trace.bin"
    np.asarray(ids, np.uint64).tofile(binary)
    out = tmp_path / "again.log"
    result = run_binary("ids_profile", f"--trace={binary}", "--trace_binary", f"--out={out}")
    assert result.returncode == 0, result.stderr
    assert stack_distances.read_profile(str(out)) == stack_distances.read_profile(str(profile))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generate=trace:x.log", "--rows=10"], "generate from uniform or zipf:ALPHA"),
        (["--generate=zipf:1.1"], "--generate needs --rows"),
        (["--rows=10"], "--rows, --lookups and --seed apply only with --generate"),
        (["--generate=zipf:0", "--rows=10"], "the Zipf exponent must be a positive number"),
    ],
)
def test_profile_command_refuses_bad_flags(tmp_path, args, message):
    result = run_binary(
        "ids_profile", f"--trace={tmp_path}/t.log", f"--out={tmp_path}/p.log", *args
    )
    assert result.returncode != 0 and message in result.stderr


def test_profile_command_names_a_bad_trace_file_and_line(tmp_path):
    trace = tmp_path / "t.log"
    trace.write_text("1, 2, 3\n4, five\n")
    result = run_binary("ids_profile", f"--trace={trace}", f"--out={tmp_path}/p.log")
    assert result.returncode != 0
    assert f"--trace: '{trace}', line 2: 'five' is not an integer" in result.stderr


def test_latency_reports_the_locality_of_trace_and_zipf_ids(profile_path, tmp_path):
    _, profile = profile_path
    spec = f"trace:{profile},rmc1_table_1=zipf:1.2,rmc1_table_2=uniform"
    result = run_binary(
        "latency",
        "--model=rmc1-tiny",
        "--batch_sizes=1,4",
        "--modes=jit",
        f"--ids={spec}",
        f"--logdir={tmp_path}",
        *FAST,
    )
    assert result.returncode == 0, result.stderr
    assert f"ids:     {spec}" in result.stdout
    assert "locality per table and batch" in result.stdout
    assert "rmc1_table_0 +5 alike" in result.stdout  # the 6 tables of the trace profile
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["ids"] == spec
    described = results["id_distributions"]
    assert described["rmc1_table_1"] == "zipf:1.2" and described["rmc1_table_2"] == "uniform"
    assert described["rmc1_table_5"] == f"trace:{profile}"
    tables = results["locality"]["tables"]
    assert len(tables) == 8 * 2 and results["locality"]["cache"]["bytes"] > 0
    for row in tables:
        assert (
            0 < row["unique_rows_per_batch"] <= row["lookups_per_batch"] == 80 * row["batch_size"]
        )
        assert 0 <= row["hot_share"] <= 1 and 0 <= row["lru_hit_rate"] <= 1
    uniform = next(row for row in tables if row["table"] == "rmc1_table_2")
    zipf = next(row for row in tables if row["table"] == "rmc1_table_1")
    assert uniform["hot_share"] < 0.03 < 0.3 < zipf["hot_share"]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("zipf:-1", "--ids=zipf:-1: Id distribution 'zipf:-1': the Zipf exponent must be"),
        ("poisson", "Unknown id distribution 'poisson'; expected uniform, zipf:ALPHA"),
        ("zipf:1.1,nope=uniform", "names table 'nope', which rmc1-tiny does not have"),
        ("trace:/no/such/dist_{index}.log", "table 'rmc1_table_0': '/no/such/dist_0.log': no such"),
    ],
)
def test_bad_ids_fail_before_any_work(ids, message):
    result = run_binary("latency", "--model=rmc1-tiny", f"--ids={ids}")
    assert result.returncode != 0
    assert message in result.stderr
    assert "compiling" not in result.stdout


def test_out_of_range_profiles_name_the_file_line_and_table(tmp_path):
    profile = tmp_path / "big.log"
    stack_distances.write_profile(
        str(profile), stack_distances.profile_trace(np.asarray([5, 1500, 5, 7]))
    )
    result = run_binary("breakdown", "--model=rmc1-tiny", f"--ids=rmc1_table_4=trace:{profile}")
    assert result.returncode != 0
    assert (
        f"table 'rmc1_table_4': '{profile}', line 1: id 1500 (value 2 of the line) is beyond the "
        "table's 1000 rows" in result.stderr
    )


def test_the_machine_binary_refuses_ids():
    result = run_binary("machine", "--ids=zipf:1.1")
    assert result.returncode != 0 and "--ids does not apply" in result.stderr
