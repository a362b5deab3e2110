"""The breakdown's arithmetic against hand calculations, its stage programs against the model, and
its attribution on synthetic models."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.bench.breakdown import (
    REST,
    SHARE_SUM_TOLERANCE,
    Breakdown,
    StagePrograms,
    check_stages,
    format_table,
    measure_breakdowns,
    time_interleaved,
)
from recjax.bench.timing import TimingBudget
from recjax.inputs.features import FeatureConfig, Features, TableConfig
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.mlp import MLP
from recjax.models.family import ModelConfig, Stage
from recjax.runtime.inference import CompiledPredictor

QUICK = TimingBudget(warmup=2, min_iterations=7, min_seconds=0.0, max_seconds=0.5)

# A DLRM's stages and kinds, written out for the hand calculations below.
DLRM_KINDS = {
    "embedding": "embedding",
    "bottom_mlp": "fc",
    "interaction": "interaction",
    "top_mlp": "fc",
}
STAGES = tuple(DLRM_KINDS)


def breakdown(stage_ms, end_to_end_ms, batch_size=8, kinds=DLRM_KINDS):
    times = dict(zip(kinds, stage_ms, strict=True))
    return Breakdown(batch_size, dict(kinds), times, end_to_end_ms, 0.01)


def test_the_hand_calculations_use_dlrm_s_real_stages():
    assert {stage.name: stage.kind for stage in configs.get("rmc1-tiny").stages()} == DLRM_KINDS


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


def test_shares_of_stages_sum_each_kind_for_any_stage_names():
    kinds = {"a": "embedding", "b": "fc", "c": "other", "d": "fc", "e": "embedding"}
    b = breakdown((1.0, 2.0, 4.0, 8.0, 16.0), 40.0, kinds=kinds)
    assert list(b.shares) == ["a", "b", "c", "d", "e", REST]
    assert b.fc_share_of_stages == pytest.approx(10.0 / 31.0)
    assert b.embedding_share_of_stages == pytest.approx(17.0 / 31.0)
    assert b.share_of_stages("interaction") == 0.0
    assert b.shares[REST] == pytest.approx(9.0 / 40.0)
    assert b.dominant_stage == "e"


def test_incomplete_or_nonpositive_times_are_refused():
    with pytest.raises(ValueError, match="each stage"):
        Breakdown(1, dict(DLRM_KINDS), {"embedding": 1.0}, 2.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        breakdown((1.0, 1.0, 1.0, 1.0), 0.0)
    with pytest.raises(ValueError, match="'gather'"):
        breakdown((1.0,), 2.0, kinds={"embedding": "gather"})


def test_table_shows_every_batch_and_share():
    table = format_table("title", [breakdown((3.0, 1.0, 0.5, 2.5), 8.0, batch_size=64)])
    header = table.splitlines()[1].split()
    assert header[3:8] == [*STAGES, REST]
    row = table.splitlines()[-1].split()
    assert row[:2] == ["64", "8.000"]
    assert row[2:7] == ["37.5%", "12.5%", "6.2%", "31.2%", "12.5%"]
    assert row[-1] == "50.0%"  # FC/stages: (1.0 + 2.5) / 7.0


def stage_paths(params: nnx.State) -> set[tuple]:
    return {path for path, _ in nnx.to_flat_state(params)}


@pytest.mark.parametrize("preset", ["rmc1-tiny", "rmc2-tiny"])
def test_stage_programs_compose_to_the_model_s_logits(preset):
    """The stage programs, run in order on each other's outputs, give model(batch)."""
    model = configs.get(preset).build(nnx.Rngs(0))
    batch = to_device(synthetic_features(model.config, 6, seed=1))
    programs = StagePrograms(model)
    values = {"batch": batch}
    for stage in model.config.stages():
        values[stage.name] = programs[stage.name](*(values[name] for name in stage.inputs))
    logits = values[model.config.stages()[-1].name]
    expected = model(batch)
    assert set(logits) == set(expected) == set(model.config.heads)
    for head in expected:
        np.testing.assert_allclose(logits[head], expected[head], rtol=0, atol=1e-5)


def test_stage_programs_compose_to_the_predictor():
    """Compiled for the batch, the last stage's logits give the predictor's probabilities."""
    model = configs.get("rmc1-tiny").build(nnx.Rngs(0))
    batch = to_device(synthetic_features(model.config, 6, seed=1))
    programs = StagePrograms(model)
    calls = programs.calls(batch)
    assert list(calls) == list(STAGES)
    logits = calls["top_mlp"][0]()
    predicted = CompiledPredictor(model, [6])(batch)
    np.testing.assert_allclose(jax.nn.sigmoid(logits["click"]), predicted["click"], rtol=1e-5)
    assert float(calls["embedding"][1]()) == 0.0  # the no-op twin does no work


def test_each_stage_program_takes_only_the_parameters_it_reads():
    model = configs.get("rmc2-tiny").build(nnx.Rngs(0))
    programs = StagePrograms(model)
    tables = {("sparse_arch", "tables", group) for group in model.sparse_arch.tables}
    assert stage_paths(programs["embedding"].params) == tables
    for stage in ("bottom_mlp", "interaction", "top_mlp"):
        assert not stage_paths(programs[stage].params) & tables
    read = set().union(*(stage_paths(programs[stage].params) for stage in STAGES))
    assert read == stage_paths(nnx.split(model)[1])  # every parameter is read by some stage


class SumOfParts(nnx.Module):
    """A test family: the sum of all pooled embedding values plus the sum of an MLP's outputs.

    Not a DLRM, so its three stages (lookup, mlp, head) show that the breakdown takes the stages'
    names, wiring and kinds from the contract alone; and one stage can be made to dominate.
    """

    def __init__(self, config: "SumOfPartsConfig", *, rngs: nnx.Rngs):
        self.config = config
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )
        self.mlp = MLP(config.dense_features, config.hidden, relu_last=True, rngs=rngs)

    def lookup(self, batch: Features) -> jax.Array:
        """[B] the sum of every feature's pooled row."""
        return sum(pooled.sum(axis=-1) for pooled in self.sparse_arch(batch).values())

    def head(self, pooled: jax.Array, dense: jax.Array) -> dict[str, jax.Array]:
        return {"click": pooled + dense.sum(axis=-1)}

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        return self.head(self.lookup(batch), self.mlp(batch.dense))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SumOfPartsConfig(ModelConfig):
    hidden: tuple[int, ...]

    def build(self, rngs: nnx.Rngs) -> SumOfParts:
        return SumOfParts(self, rngs=rngs)

    def stages(self) -> tuple[Stage, ...]:
        return (
            Stage("lookup", ("batch",), lambda model, batch: model.lookup(batch), "embedding"),
            Stage("mlp", ("batch",), lambda model, batch: model.mlp(batch.dense), "fc"),
            Stage("head", ("lookup", "mlp"), lambda model, *values: model.head(*values), "other"),
        )

    def architecture_summary(self) -> str:
        return f"{len(self.features)} features, mlp {self.dense_features}-{self.hidden}"


def embedding_heavy() -> SumOfPartsConfig:
    """Gathers 16 x 100 rows of 64 floats per sample; the MLP is 4 units wide."""
    tables = tuple(TableConfig(f"table_{index}", 20_000, 64) for index in range(16))
    return SumOfPartsConfig(
        name="embedding-heavy",
        tables=tables,
        features=tuple(FeatureConfig(table.name, table.name, capacity=100) for table in tables),
        dense_features=4,
        hidden=(4,),
    )


def mlp_heavy(family: type[SumOfPartsConfig] = SumOfPartsConfig) -> SumOfPartsConfig:
    """A 1024-1024-1024-8 MLP (4 MFLOP per sample); one lookup in a 10-row table."""
    return family(
        name="mlp-heavy",
        tables=(TableConfig("table", 10, 8),),
        features=(FeatureConfig("table", "table", capacity=1),),
        dense_features=1024,
        hidden=(1024, 1024, 8),
    )


def test_any_family_s_stages_compose_to_its_logits():
    model = mlp_heavy().build(nnx.Rngs(0))
    batch = to_device(synthetic_features(model.config, 3, seed=2))
    programs = StagePrograms(model)
    calls = programs.calls(batch)
    assert list(calls) == ["lookup", "mlp", "head"]
    np.testing.assert_allclose(calls["head"][0]()["click"], model(batch)["click"], atol=1e-5)
    assert stage_paths(programs["head"].params) == set()


@pytest.mark.parametrize(
    ("config", "expected"),
    [(embedding_heavy(), "lookup"), (mlp_heavy(), "mlp")],
)
def test_a_dominant_stage_is_attributed_to_it(config, expected):
    """Each model does over 50 times more work in one stage than in all others together."""
    model = config.build(nnx.Rngs(0))
    (result,) = measure_breakdowns(model, (128,), QUICK, seed=0, progress=lambda _: None)
    assert result.dominant_stage == expected
    assert result.shares[expected] > 0.5
    assert abs(sum(result.shares.values()) - 1.0) <= SHARE_SUM_TOLERANCE
    assert result.stage_kinds == {"lookup": "embedding", "mlp": "fc", "head": "other"}


def stage(name, inputs, kind="other"):
    return Stage(name, inputs, lambda model, *values: values[0], kind)


def test_miswired_stages_are_refused_by_name():
    with pytest.raises(ValueError, match=r"'b' reads \['c'\]"):
        check_stages("m", (stage("a", ("batch",)), stage("b", ("c",)), stage("c", ("a",))))
    with pytest.raises(ValueError, match="two stages are named 'a'"):
        check_stages("m", (stage("a", ("batch",)), stage("a", ("a",))))
    with pytest.raises(ValueError, match="'rest' is reserved"):
        check_stages("m", (stage("rest", ("batch",)),))
    with pytest.raises(ValueError, match="no stages"):
        check_stages("m", ())


def test_a_last_stage_without_the_heads_is_refused():
    class Unheaded(SumOfPartsConfig):
        def stages(self):
            return (Stage("mlp", ("batch",), lambda model, batch: model.mlp(batch.dense), "fc"),)

    with pytest.raises(ValueError, match=r"last stage 'mlp' must return the heads' logits"):
        StagePrograms(mlp_heavy(Unheaded).build(nnx.Rngs(0)))


def test_programs_are_timed_in_interleaved_rounds():
    log = []
    calls = {"a": lambda: log.append("a"), "b": lambda: log.append("b")}
    budget = TimingBudget(warmup=2, min_iterations=6, min_seconds=0.0, max_seconds=10.0)
    latencies = time_interleaved(calls, budget, rounds=3)
    assert {name: len(values) for name, values in latencies.items()} == {"a": 6, "b": 6}
    assert "".join(log) == "aaaabbbbaabbaabb"  # warm-up in the first round only
