"""The model workload: pre-generated inputs, shared compiled predictor, nothing compiled while
serving."""

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.serving.loadgen import LoadSettings, run_point
from recjax.serving.query_sizes import QuerySizeDistribution
from recjax.serving.workload import ModelWorkload
from tests.compile_counter import CompileCounter


@pytest.fixture(scope="module")
def model():
    return configs.get("rmc1-tiny").build(nnx.Rngs(0))


def test_serving_a_schedule_compiles_nothing(model):
    settings = LoadSettings(
        qps=200.0,
        duration_s=0.5,
        max_requests=10_000,
        query_sizes=QuerySizeDistribution.parse("normal:10,6"),
        max_query_size=24,
        sub_batches=(8,),
        workers=2,
        drain_timeout_s=5.0,
        seed=0,
    )
    sizes = settings.compiled_sizes()
    assert sizes == (1, 2, 4, 8)
    with CompileCounter() as counter:
        workload = ModelWorkload(model, sizes, seed=0, variants=3)
        workload.warm_up(1)
        compiled = counter.count
        point = run_point(workload, settings, 8, 200.0, progress=lambda _: None)
    assert compiled == len(sizes)
    assert counter.count == compiled, "something compiled while serving"
    summary = point.summary
    assert summary.unfinished == 0 and summary.completed == summary.requests > 50
    assert point.record.tasks.padded.max() == 8


def test_inputs_are_pre_generated_and_served_in_turn(model):
    workload = ModelWorkload(model, (4, 2, 4), seed=3, variants=2)
    assert workload.sizes == (2, 4)
    assert [len(workload.inputs[size]) for size in (2, 4)] == [2, 2]
    first, second = workload.inputs[4]
    assert not np.array_equal(np.asarray(first.ids), np.asarray(second.ids))
    # Calls alternate between the variants: the outputs are those of the predictor on each, a
    # [B] array per head of the model.
    outputs = [workload(4) for _ in range(2)]
    expected = [workload.predictor(batch) for batch in (first, second)]
    for output, reference in zip(outputs, expected, strict=True):
        assert set(output) == set(model.config.heads)
        for head in model.config.heads:
            assert output[head].shape == (4,)
            np.testing.assert_allclose(output[head], reference[head], rtol=1e-6)
    assert not np.allclose(outputs[0]["click"], outputs[1]["click"])
    with pytest.raises(KeyError):
        workload(3)
