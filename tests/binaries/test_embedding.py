"""benchmarks.embedding end to end on a tiny preset, and its library on features of every kind."""

import json
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from recjax import native
from recjax.bench import embedding_benchmark
from recjax.bench.timing import TimingBudget
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.models.family import ModelConfig
from tests.binaries.binary import REPO, run_binary


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
    assert results["benchmark"] == "embedding" and results["model"] == "rmc3-tiny"
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
    # rmc3-tiny: 10 tables of 1,000 rows x 32 float32 in one group; its rows are 128 bytes.
    measured_on = "the largest table group d32_float32 (10,000 rows of 128 bytes)"
    assert results["ceiling"]["measured_on"] == measured_on
    assert f"on {measured_on}" in result.stdout
    for row in results["results"]:
        assert row["max_abs_difference"] < 1e-5  # every implementation agrees with the first
        gathered = row["batch_size"] * 10 * 20 * 32 * 4  # B x T x L x D x 4 bytes
        rows = row["batch_size"] * 10 * 20  # B x T x L
        latencies = np.asarray(row["latencies_ms"]) / 1e3
        assert row["gathered_bytes_per_call"] == gathered and row["rows_per_call"] == rows
        assert row["gigabytes_per_s"] == pytest.approx(gathered / np.median(latencies) / 1e9)
        assert row["rows_per_s"] == pytest.approx(rows / np.median(latencies))
        assert row["percent_of_ceiling"] == pytest.approx(100 * row["gigabytes_per_s"] / ceiling)
    assert "% ceiling" in result.stdout


def test_unknown_implementation_is_refused():
    result = run_binary("embedding", "--implementations=native,fastest", timeout=120)
    assert result.returncode != 0
    assert "--implementations must be a non-empty subset" in result.stderr


def test_embedding_lowering_flag_is_refused():
    result = run_binary(
        "embedding", "--model=rmc3-tiny", "--embedding_lowering=native", timeout=120
    )
    assert result.returncode != 0
    assert "--embedding_lowering does not apply to benchmarks.embedding" in result.stderr
    assert "built the model" not in result.stdout


# Two table groups (8 and 16 floats) and features of every kind: sum, mean and ragged, weighted,
# a sequence, and a second table.
MIXED = ModelConfig(
    name="mixed",
    tables=(TableConfig("items", 500, 8), TableConfig("users", 300, 16)),
    features=(
        FeatureConfig("clicked", "items", 5),
        FeatureConfig("liked", "items", 3, pooling="mean", fixed_length=False),
        FeatureConfig("bought", "items", 4, weighted=True),
        FeatureConfig("history", "items", 6, pooling="none", fixed_length=False),
        FeatureConfig("user", "users", 1),
    ),
    dense_features=3,
)
MIXED_BYTES_PER_SAMPLE = (5 + 3 + 4 + 6) * 8 * 4 + 1 * 16 * 4  # capacity x row bytes
MIXED_ROWS_PER_SAMPLE = 5 + 3 + 4 + 6 + 1


def test_torch_is_skipped_with_the_features_it_cannot_compute():
    runnable, notes = embedding_benchmark.runnable_implementations(
        MIXED, ["gather_sum", "torch", "gather_sum"]
    )
    assert runnable == ("gather_sum",)
    [note] = notes
    assert note.startswith("skipping torch: ")
    if embedding_benchmark.torch_available()[0]:
        assert (
            "liked: pooling 'mean', variable length; bought: weighted; history: pooling 'none', "
            "variable length" in note
        )
        assert "clicked" not in note and "user" not in note
    with pytest.raises(ValueError, match="liked: pooling 'mean'"):
        embedding_benchmark.run_embedding_benchmark(
            MIXED, None, (2,), ("torch",), TimingBudget(), rotate_bytes=1, seed=0
        )


def test_every_lowering_times_the_collection_of_mixed_features():
    collection = EmbeddingCollection(
        MIXED.tables, MIXED.features, lowering="gather_sum", rngs=nnx.Rngs(0)
    )
    lowerings = ("gather_sum", "pooling_loop", "segment_sum")
    if native.availability()[0]:
        lowerings += ("native",)
    budget = TimingBudget(warmup=1, min_iterations=2, min_seconds=0, max_seconds=0.1)
    measurements = embedding_benchmark.run_embedding_benchmark(
        MIXED, collection, (2, 8), lowerings, budget, rotate_bytes=4096, seed=0, progress=print
    )
    assert [(m.implementation, m.batch_size) for m in measurements] == [
        (name, batch) for batch in (2, 8) for name in lowerings
    ]
    for m in measurements:
        assert m.max_abs_difference < 1e-6
        assert m.gathered_bytes_per_call == m.batch_size * MIXED_BYTES_PER_SAMPLE
        assert m.rows_per_call == m.batch_size * MIXED_ROWS_PER_SAMPLE
        assert m.rows_per_s == pytest.approx(m.rows_per_call / np.median(m.latencies_s))
    # At least 4096 bytes of rows per rotation: ceil(4096 / (2 x 640)) = 4 batches of 2 rows.
    assert embedding_benchmark.rotation_count(MIXED, 2, 4096) == 4
    # The largest group is users' (300 x 64 bytes = 19,200 > 500 x 32 = 16,000).
    assert embedding_benchmark.largest_group(collection) == "d16_float32"
    ceiling, source = embedding_benchmark.measure_gather_ceiling(collection, 10_000, 1, 2)
    assert source == "the largest table group d16_float32 (300 rows of 64 bytes)"
    assert ceiling.probe == "gather_dim16" and ceiling.median > 0
    table = embedding_benchmark.format_table(measurements, ceiling, source)
    assert f"on {source})" in table
    assert len([line for line in table.splitlines() if line.split()[0] in lowerings]) == 2 * len(
        lowerings
    )
