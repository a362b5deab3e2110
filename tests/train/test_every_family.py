"""Every registered family's tiny preset trains through the family contract alone."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.train.criteo import CriteoMapping, parse_lines
from recjax.train.loop import TrainSettings, make_program
from tests.train.test_criteo import LINES

TINY = [name for name in configs.names() if name.endswith("-tiny")]


@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_trains_on_mapped_criteo_lines_and_predicts_every_head(name):
    config = configs.get(name)
    model = config.build(nnx.Rngs(0))
    initial = {k: np.array(v) for k, v in model.sparse_arch.table_buffers().items()}
    program = make_program(model, TrainSettings(steps=3, batch_size=4))
    state = program.init(model)
    batch = jax.device_put(CriteoMapping(config).features(parse_lines(LINES * 2)))
    losses = []
    for _ in range(3):
        state, metrics = program.step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert set(metrics) == {"loss", *(f"loss/{head}" for head in config.heads)}
    for group, table in state.tables.items():  # every group, wide and first-order ones included
        changed = np.any(np.asarray(table) != initial[group], axis=1)
        assert 0 < changed.sum() < table.shape[0]  # some rows moved, not all
    probabilities = program.predict(state, batch)
    assert set(probabilities) == set(config.heads)
    for value in probabilities.values():
        assert value.shape == (4,) and np.all((value >= 0) & (value <= 1))


def test_tables_not_float32_are_refused_when_built_naming_them():
    config = dataclasses.replace(configs.get("rmc1-tiny"), table_dtype="int8")
    with pytest.raises(ValueError, match=r"rmc1-tiny: training updates tables of dtype"):
        make_program(config.build(nnx.Rngs(0)), TrainSettings(steps=3, batch_size=4))
