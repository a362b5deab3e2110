"""The breakdown's arithmetic against hand calculations, and its attribution on synthetic models."""

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.bench.breakdown import (
    REST,
    SHARE_SUM_TOLERANCE,
    STAGES,
    Breakdown,
    StagePrograms,
    format_table,
    measure_breakdowns,
    time_interleaved,
)
from recjax.bench.timing import TimingBudget
from recjax.inputs.data import synthetic_batch, to_device
from recjax.layers.embedding_bag import EmbeddingTableConfig
from recjax.models.dlrm import DLRM, DLRMConfig, uniform_tables
from recjax.runtime.inference import CompiledPredictor

QUICK = TimingBudget(warmup=2, min_iterations=7, min_seconds=0.0, max_seconds=0.5)


def breakdown(stage_ms, end_to_end_ms, batch_size=8):
    return Breakdown(batch_size, dict(zip(STAGES, stage_ms, strict=True)), end_to_end_ms, 0.01)


@pytest.mark.parametrize(
    ("stage_ms", "end_to_end_ms"),
    [
        ((3.0, 1.0, 0.5, 2.5), 8.0),  # the stages leave a positive rest
        ((0.2, 0.1, 0.05, 0.1), 0.3),  # the stages sum to more: a negative rest
        ((1e-3, 7.0, 0.0, 1e4), 9.9e3),
    ],
)
def test_shares_sum_to_one_and_match_hand_calculation(stage_ms, end_to_end_ms):
    shares = breakdown(stage_ms, end_to_end_ms).shares
    assert list(shares) == [*STAGES, REST]
    assert abs(sum(shares.values()) - 1.0) <= SHARE_SUM_TOLERANCE
    for stage, ms in zip(STAGES, stage_ms, strict=True):
        assert shares[stage] == pytest.approx(ms / end_to_end_ms, rel=1e-12)
    assert shares[REST] == pytest.approx((end_to_end_ms - sum(stage_ms)) / end_to_end_ms)


def test_shares_of_stages_and_dominant_stage():
    b = breakdown((3.0, 1.0, 0.5, 2.5), 8.0)
    assert b.rest_ms == pytest.approx(1.0)
    assert b.fc_share_of_stages == pytest.approx(3.5 / 7.0)
    assert b.embedding_share_of_stages == pytest.approx(3.0 / 7.0)
    assert b.dominant_stage == "embedding"
    assert breakdown((1.0, 1.0, 0.1, 4.0), 6.0).dominant_stage == "top_mlp"


def test_incomplete_or_nonpositive_times_are_refused():
    with pytest.raises(ValueError, match="each stage"):
        Breakdown(1, {"embedding": 1.0}, 2.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        breakdown((1.0, 1.0, 1.0, 1.0), 0.0)


def test_table_shows_every_batch_and_share():
    table = format_table("title", [breakdown((3.0, 1.0, 0.5, 2.5), 8.0, batch_size=64)])
    row = table.splitlines()[-1].split()
    assert row[:2] == ["64", "8.000"]
    assert row[2:7] == ["37.5%", "12.5%", "6.2%", "31.2%", "12.5%"]


def test_stage_programs_compose_to_the_whole_model():
    """Running the stage programs in turn gives the predictor's probabilities."""
    model = DLRM(configs.get("rmc1-tiny"), rngs=nnx.Rngs(0))
    batch = to_device(synthetic_batch(model.config, 6, seed=1))
    calls = StagePrograms(model).calls(batch)
    stage_output = np.asarray(calls["top_mlp"][0]())
    np.testing.assert_allclose(stage_output, CompiledPredictor(model, [6])(batch), rtol=1e-5)
    assert float(calls["embedding"][1]()) == 0.0  # the no-op twin does no work


def embedding_heavy() -> DLRMConfig:
    """Gathers 16 x 100 rows of 64 floats per sample; the MLPs are 4 units wide."""
    return DLRMConfig(
        name="embedding-heavy",
        dense_features=4,
        bottom_mlp=(4,),
        tables=uniform_tables("table", count=16, num_rows=20_000, dim=64),
        pooling_factor=100,
        top_mlp=(4, 1),
    )


def bottom_mlp_heavy() -> DLRMConfig:
    """A 1024-1024-1024-8 bottom MLP (4 MFLOP per sample); one lookup in a 10-row table."""
    return DLRMConfig(
        name="bottom-heavy",
        dense_features=1024,
        bottom_mlp=(1024, 1024, 8),
        tables=(EmbeddingTableConfig("table", num_rows=10, dim=8),),
        pooling_factor=1,
        top_mlp=(4, 1),
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [(embedding_heavy(), "embedding"), (bottom_mlp_heavy(), "bottom_mlp")],
)
def test_a_dominant_stage_is_attributed_to_it(config, expected):
    """Each model does over 50 times more work in one stage than in all others together."""
    model = DLRM(config, rngs=nnx.Rngs(0))
    (result,) = measure_breakdowns(model, (128,), QUICK, seed=0, progress=lambda _: None)
    assert result.dominant_stage == expected
    assert result.shares[expected] > 0.5
    assert abs(sum(result.shares.values()) - 1.0) <= SHARE_SUM_TOLERANCE


def test_programs_are_timed_in_interleaved_rounds():
    log = []
    calls = {"a": lambda: log.append("a"), "b": lambda: log.append("b")}
    budget = TimingBudget(warmup=2, min_iterations=6, min_seconds=0.0, max_seconds=10.0)
    latencies = time_interleaved(calls, budget, rounds=3)
    assert {name: len(values) for name, values in latencies.items()} == {"a": 6, "b": 6}
    assert "".join(log) == "aaaabbbbaabbaabb"  # warm-up in the first round only
