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

# Families the sparse train step cannot train yet, and why (it refuses them when built): Wide &
# Deep's wide part and DeepFM's first-order term read their dim-1 tables through
# `sparse_arch.pool_call`, outside `sparse_arch(batch)`; DIEN's default recurrence is a while loop
# that stops at the batch's longest sequence, which reverse mode cannot differentiate (its
# `recurrence_loop=scan` form trains, below).
NOT_TRAINABLE_YET = {
    "deepfm-tiny": "sparse_arch.pool_call",
    "wnd-tiny": "sparse_arch.pool_call",
    "mtwnd-tiny": "sparse_arch.pool_call",
    "dien-tiny": "Reverse-mode differentiation does not work for lax.while_loop",
}
TINY = [name for name in configs.names() if name.endswith("-tiny")]
TRAINABLE = [name for name in TINY if name not in NOT_TRAINABLE_YET]


@pytest.mark.parametrize("name", sorted(NOT_TRAINABLE_YET))
def test_models_the_step_cannot_train_are_refused_when_built_naming_why(name):
    config = configs.get(name)
    with pytest.raises(ValueError, match=f"{name}: the sparse train step cannot train this model"):
        make_program(config.build(nnx.Rngs(0)), TrainSettings(steps=3, batch_size=4))
    with pytest.raises(ValueError, match=NOT_TRAINABLE_YET[name]):
        make_program(config.build(nnx.Rngs(0)), TrainSettings(steps=3, batch_size=4))


@pytest.mark.parametrize(
    "config",
    [
        *(configs.get(name) for name in TRAINABLE),
        dataclasses.replace(configs.get("dien-tiny"), recurrence_loop="scan"),
    ],
    ids=[*TRAINABLE, "dien-tiny-scan"],
)
def test_tiny_preset_trains_on_mapped_criteo_lines_and_predicts_every_head(config):
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
    for group, table in state.tables.items():
        changed = np.any(np.asarray(table) != initial[group], axis=1)
        assert 0 < changed.sum() < table.shape[0]  # some rows moved, not all
    probabilities = program.predict(state, batch)
    assert set(probabilities) == set(config.heads)
    for value in probabilities.values():
        assert value.shape == (4,) and np.all((value >= 0) & (value <= 1))
