"""Optimizers by name: any of optax's for the dense parameters, and learning-rate schedules.

    schedule = learning_rate_schedule("warmup_cosine", 1e-3, total_steps=10_000, warmup_steps=500)
    dense = dense_optimizer("adam", schedule)                  # an optax.GradientTransformation
    tables = embedding_optimizer("rowwise_adagrad", schedule)  # see embedding_optimizers.py

A schedule maps the step count to the learning rate; the tables and the dense parameters each get
their own base rate on the same shape of schedule.
"""

from collections.abc import Callable

import jax.numpy as jnp
import optax

# optax's optimizers whose first argument is the learning rate (a number or a schedule).
DENSE_OPTIMIZERS: tuple[str, ...] = tuple(
    name
    for name in (
        "adam",
        "adamw",
        "adagrad",
        "sgd",
        "rmsprop",
        "lamb",
        "lion",
        "adabelief",
        "yogi",
        "novograd",
        "adafactor",
    )
    if hasattr(optax, name)
)

SCHEDULES = ("constant", "linear", "cosine", "warmup_cosine")


def learning_rate_schedule(
    name: str, learning_rate: float, total_steps: int, warmup_steps: int = 0
) -> optax.Schedule:
    """The learning rate at each step.

    constant: `learning_rate` (after a linear warm-up from 0 over `warmup_steps`, if any);
    linear: warm-up, then linear decay to 0 at `total_steps`;
    cosine, warmup_cosine: warm-up, then cosine decay to 0 at `total_steps` (the two names are
    the same schedule; "cosine" reads better without warm-up).

    Raises ValueError naming a bad name or value.
    """
    if name not in SCHEDULES:
        raise ValueError(f"Unknown learning-rate schedule {name!r}; expected one of {SCHEDULES}.")
    if learning_rate <= 0 or total_steps <= 0 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"A schedule needs learning_rate > 0, total_steps > 0 and 0 <= warmup_steps <= "
            f"total_steps; got learning_rate={learning_rate}, total_steps={total_steps}, "
            f"warmup_steps={warmup_steps}."
        )
    decay_steps = max(total_steps - warmup_steps, 1)
    if name == "constant":
        after = optax.constant_schedule(learning_rate)
    elif name == "linear":
        after = optax.linear_schedule(learning_rate, 0.0, decay_steps)
    else:
        after = optax.cosine_decay_schedule(learning_rate, decay_steps)
    if warmup_steps == 0:
        return after
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, after], [warmup_steps])


def dense_optimizer(
    name: str, learning_rate: float | optax.Schedule
) -> optax.GradientTransformation:
    """optax.<name>(learning_rate); raises ValueError naming the accepted names."""
    if name not in DENSE_OPTIMIZERS:
        raise ValueError(f"Unknown dense optimizer {name!r}; expected one of {DENSE_OPTIMIZERS}.")
    return getattr(optax, name)(learning_rate)


def rate_at(schedule: Callable | float, step: int) -> float:
    """The learning rate at `step` (for progress lines and TensorBoard)."""
    return float(schedule(jnp.asarray(step)) if callable(schedule) else schedule)
