"""benchmarks.embedding end to end on a tiny preset."""

import json
import subprocess
import sys

import numpy as np
import pytest

from recjax import native
from recjax.bench import embedding_benchmark
from tests.binaries.binary import REPO


def test_embedding_benchmark_end_to_end(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.embedding",
            "--model=rmc3-tiny",
            "--batch_sizes=2,8",
            "--implementations=gather_sum,pooling_loop,segment_sum,native,torch",
            "--min_iterations=2",
            "--min_seconds=0",
            "--max_seconds=0.3",
            "--ceiling_rows=100000",
            f"--logdir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    implementations = {row["implementation"] for row in results["results"]}
    expected = {"gather_sum", "pooling_loop", "segment_sum"}
    if native.availability()[0]:
        expected.add("native")
    if embedding_benchmark.torch_available()[0]:
        expected.add("torch")
    else:
        assert "skipping torch: torch is not installed" in result.stdout
    assert implementations == expected
    ceiling = results["ceiling"]["median"]
    for row in results["results"]:
        assert row["max_abs_difference"] < 1e-5  # every lowering agrees with the first
        gathered = row["batch_size"] * 10 * 20 * 32 * 4  # B x T x L x D x 4 bytes
        latencies = np.asarray(row["latencies_ms"]) / 1e3
        assert row["gigabytes_per_s"] == pytest.approx(gathered / np.median(latencies) / 1e9)
        assert row["percent_of_ceiling"] == pytest.approx(100 * row["gigabytes_per_s"] / ceiling)
    assert "% ceiling" in result.stdout


def test_unknown_implementation_is_refused():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.embedding", "--implementations=native,fastest"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "--implementations must be a non-empty subset" in result.stderr
