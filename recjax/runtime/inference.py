"""Inference: one pure predict function, compiled ahead of time per batch size, and its eager twin.

The model is split once (`nnx.split`) into a static graph definition and a parameter pytree. The
parameters are *arguments* of the compiled function, never closed over (a closed-over table would
become a multi-GB constant in the program) and never donated (they are reused by every call).

Every family goes through the same function: the model maps a `Features` batch to {head: logits},
and predict returns {head: probabilities [B]} (a sigmoid per head).

Invalid inputs: XLA's gather clamps an out-of-range id instead of failing, and a NaN dense feature
becomes a NaN prediction. The predict function therefore also returns one bool, computed inside the
same program (`recjax.inputs.checks.inputs_valid`, fused by XLA). The predictors read it back (one
scalar transfer per call, included in every timed call) and raise `InvalidInputError` naming the
first bad value. The outputs of a rejected batch are discarded.
"""

import time
from collections.abc import Callable, Iterable

import jax
from flax import nnx

from recjax.inputs.checks import (
    BatchSpec,
    InvalidInputError,
    describe_invalid_inputs,
    inputs_valid,
)
from recjax.inputs.features import Features
from recjax.inputs.synthetic import abstract_features

Predictions = dict[str, jax.Array]
PredictFn = Callable[[nnx.State, Features], tuple[Predictions, jax.Array]]


def make_predict_fn(graphdef: nnx.GraphDef) -> PredictFn:
    """The pure function (params, batch) -> ({head: probabilities [B]}, inputs valid []) of a
    model."""

    def predict(params: nnx.State, batch: Features) -> tuple[Predictions, jax.Array]:
        model = nnx.merge(graphdef, params)
        logits = model(batch)
        probabilities = {head: jax.nn.sigmoid(value) for head, value in logits.items()}
        return probabilities, inputs_valid(model.config, batch)

    return predict


def _checked(config, batch: Features, probabilities: Predictions, valid) -> Predictions:
    if not bool(valid):
        raise InvalidInputError(f"{config.name}: {describe_invalid_inputs(config, batch)}")
    return probabilities


class CompiledPredictor:
    """`predict` jitted for the CPU backend and compiled ahead of time, once per batch size.

    Example:
        >>> predictor = CompiledPredictor(model)
        >>> predictor.compile(64)            # seconds spent compiling
        >>> predictor(batch_of_64)["click"]  # [64] click probabilities; never compiles
    """

    def __init__(self, model: nnx.Module, batch_sizes: Iterable[int] = ()):
        self.config = model.config
        self._spec = BatchSpec(self.config)
        graphdef, self.params = nnx.split(model)
        self._jitted = jax.jit(make_predict_fn(graphdef))
        self._executables: dict[int, jax.stages.Compiled] = {}
        self.compile_seconds: dict[int, float] = {}
        for batch_size in batch_sizes:
            self.compile(batch_size)

    @property
    def batch_sizes(self) -> list[int]:
        return sorted(self._executables)

    def compile(self, batch_size: int) -> float:
        """Lowers and compiles for `batch_size` (once); returns the seconds it took."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive; got {batch_size}.")
        if batch_size not in self._executables:
            start = time.perf_counter()
            lowered = self._jitted.lower(self.params, abstract_features(self.config, batch_size))
            self._executables[batch_size] = lowered.compile()
            self.compile_seconds[batch_size] = time.perf_counter() - start
        return self.compile_seconds[batch_size]

    def __call__(self, batch: Features) -> Predictions:
        """{head: [B] probabilities}; raises InvalidInputError for a bad id, length or value."""
        self._spec.check(batch)
        executable = self._executables.get(batch.batch_size)
        if executable is None:
            raise ValueError(
                f"No program compiled for batch size {batch.batch_size}; compiled sizes are "
                f"{self.batch_sizes}. Call compile({batch.batch_size}) first."
            )
        probabilities, valid = executable(self.params, batch.without_labels())
        return _checked(self.config, batch, probabilities, valid)


class EagerPredictor:
    """The same predict function on the same parameters, run op by op (`jax.disable_jit`)."""

    def __init__(self, model: nnx.Module):
        self.config = model.config
        self._spec = BatchSpec(self.config)
        graphdef, self.params = nnx.split(model)
        self._predict = make_predict_fn(graphdef)

    def __call__(self, batch: Features) -> Predictions:
        """{head: [B] probabilities}; raises InvalidInputError for a bad id, length or value."""
        self._spec.check(batch)
        with jax.disable_jit():
            probabilities, valid = self._predict(self.params, batch.without_labels())
        return _checked(self.config, batch, probabilities, valid)
