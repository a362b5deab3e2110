"""The embedding microbenchmark on quantized tables: stored bytes, a ceiling on the same rows."""

import dataclasses

from flax import nnx

import configs
from recjax.bench.embedding_benchmark import (
    measure_gather_ceiling,
    run_embedding_benchmark,
    torch_supports,
)
from recjax.bench.timing import TimingBudget


def test_int8_tables_are_timed_on_their_stored_rows():
    config = dataclasses.replace(configs.get("rmc2-tiny"), table_dtype="int8")
    model = config.build(nnx.Rngs(0))
    supported, reason = torch_supports(config)
    assert not supported and "has int8 tables" in reason and "--modes=torchrec" in reason
    ceiling, source = measure_gather_ceiling(model.sparse_arch, 20_000, threads=1, repeats=1)
    assert source == "the largest table group d64_int8 (32,000 rows of 72 bytes)"
    assert "72-byte rows" in ceiling.detail and ceiling.median > 0
    budget = TimingBudget(warmup=0, min_iterations=1, min_seconds=0, max_seconds=0.01)
    measurements = run_embedding_benchmark(
        config,
        model.sparse_arch,
        (4,),
        ("native", "pooling_loop"),
        budget,
        rotate_bytes=1,
        seed=0,
        progress=lambda _: None,
    )
    for measurement in measurements:
        assert measurement.gathered_bytes_per_call == 4 * 32 * 120 * 72
        assert measurement.max_abs_difference < 1e-5
