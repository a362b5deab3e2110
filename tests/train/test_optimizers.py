"""Learning-rate schedules and optimizers by name."""

import numpy as np
import optax
import pytest

from recjax.train.embedding_optimizers import embedding_optimizer
from recjax.train.optimizers import dense_optimizer, learning_rate_schedule, rate_at


def test_schedules_by_hand():
    constant = learning_rate_schedule("constant", 0.1, total_steps=100, warmup_steps=10)
    assert rate_at(constant, 0) == 0.0 and rate_at(constant, 5) == pytest.approx(0.05)
    assert rate_at(constant, 10) == pytest.approx(0.1) == rate_at(constant, 99)
    linear = learning_rate_schedule("linear", 0.2, total_steps=100)
    assert rate_at(linear, 0) == pytest.approx(0.2) and rate_at(linear, 50) == pytest.approx(0.1)
    cosine = learning_rate_schedule("warmup_cosine", 1.0, total_steps=110, warmup_steps=10)
    assert rate_at(cosine, 10) == pytest.approx(1.0)
    assert rate_at(cosine, 60) == pytest.approx(0.5, abs=1e-6)
    assert rate_at(cosine, 110) == pytest.approx(0.0, abs=1e-6)


def test_bad_names_and_values_are_refused_by_name():
    with pytest.raises(ValueError, match=r"Unknown learning-rate schedule 'step'; expected one"):
        learning_rate_schedule("step", 0.1, 10)
    with pytest.raises(ValueError, match="warmup_steps=20"):
        learning_rate_schedule("constant", 0.1, 10, warmup_steps=20)
    with pytest.raises(ValueError, match=r"Unknown dense optimizer 'adamm'; expected one of"):
        dense_optimizer("adamm", 0.1)
    with pytest.raises(ValueError, match=r"Unknown embedding optimizer 'adam'; expected one of"):
        embedding_optimizer("adam", 0.1)


def test_dense_optimizer_is_optax():
    optimizer = dense_optimizer("sgd", 0.5)
    params = {"w": np.ones(2, np.float32)}
    updates, _ = optimizer.update({"w": np.ones(2, np.float32)}, optimizer.init(params), params)
    np.testing.assert_allclose(optax.apply_updates(params, updates)["w"], [0.5, 0.5])
