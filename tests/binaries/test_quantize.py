"""The quantize binary end to end, and a quantized preset through the latency binary."""

import json

import pytest

import configs
from tests.binaries.binary import run_binary


def test_quantize_reports_every_table_and_the_end_to_end_difference(tmp_path):
    result = run_binary(
        "quantize",
        "--model=rmc1-tiny",
        "--override=table_dtype=int8",
        "--override=mlp_dtype=bfloat16",
        "--batch_size=16",
        f"--logdir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    report = results["quantization_error"]
    names = [table.name for table in configs.get("rmc1-tiny").tables]
    assert [table["table"] for table in report["tables"]] == names
    assert all(table["dtype"] == "int8" for table in report["tables"])
    assert all(0 < table["mean_abs_error"] <= table["max_abs_error"] for table in report["tables"])
    assert report["mlp_dtype"] == "bfloat16" and report["batch_size"] == 16
    assert 0 < report["max_abs_output_difference"] < 1e-2
    assert results["quantized_parameter_bytes"] == results["cost"]["parameter_bytes"]
    assert results["float32_parameter_bytes"] == configs.get("rmc1-tiny").parameter_bytes
    assert results["cost"]["table_bytes"] == 8 * 1_000 * (32 + 8)
    for name in names:
        assert name in result.stdout
    assert f"{report['max_abs_output_difference']:.3e}" in result.stdout


def test_latency_runs_int8_tables_and_counts_their_bytes(tmp_path):
    result = run_binary(
        "latency",
        "--model=rmc2-tiny",
        "--override=table_dtype=int8",
        "--batch_sizes=2",
        "--modes=jit",
        "--min_iterations=2",
        "--min_seconds=0",
        "--max_seconds=0.2",
        "--warmup=1",
        f"--logdir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["table_dtype"] == "int8"
    assert results["cost"]["table_bytes"] == 32 * 1_000 * (64 + 8)
    assert results["cost"]["embedding_bytes_per_sample"] == 32 * 120 * (64 + 8)


def test_latency_torchrec_mode_reports_its_threads_and_difference(tmp_path):
    try:
        from recjax.interop.torchrec_twins import require_torchrec

        require_torchrec()
    except ImportError as error:
        pytest.skip(f"torchrec is an optional extra: {error}")
    result = run_binary(
        "latency",
        "--model=rmc3-tiny",
        "--override=table_dtype=int8",
        "--batch_sizes=2",
        "--modes=jit,torchrec",
        "--min_iterations=2",
        "--min_seconds=0",
        "--max_seconds=0.2",
        "--warmup=1",
        f"--logdir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    assert "fbgemm-gpu-cpu 1.8.0: TorchRec int8 embedding lookups" in result.stdout
    assert "torchrec/jit" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["thread_counts"]["fbgemm_gpu_cpu_version"] == "1.8.0"
    (torchrec,) = [row for row in results["results"] if row["mode"] == "torchrec"]
    assert 0 < torchrec["max_abs_difference_from_jit"] < 1e-3
