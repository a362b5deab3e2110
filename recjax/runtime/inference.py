"""Inference: one pure predict function, compiled ahead of time per batch size, and its eager twin.

The model is split once (`nnx.split`) into a static graph definition and a parameter pytree. The
parameters are *arguments* of the compiled function, never closed over (a closed-over table would
become a multi-GB constant in the program) and never donated (they are reused by every call).

Out-of-range ids: XLA's gather clamps an out-of-range index instead of failing. The predict function
therefore also returns one bool, "every id lies within its table", computed inside the same program
(one compare-and-reduce over the B*T*L ids, fused by XLA: reading 4 bytes per id against the D*4
bytes per id that the gather reads, under 2 % of the embedding traffic at D=32). The predictors read
that bool back (one scalar transfer per call, included in every timed call) and raise
`IdOutOfRangeError` naming the first bad id. The gathered rows of a rejected batch are discarded.
"""

import time
from collections.abc import Callable, Iterable

import jax
import numpy as np
from flax import nnx

from recjax.inputs.data import Batch, check_batch_shapes, describe_out_of_range_ids
from recjax.models.dlrm import DLRM, DLRMConfig


class IdOutOfRangeError(ValueError):
    """A sparse id lies outside [0, rows) of its table."""


PredictFn = Callable[[nnx.State, Batch], tuple[jax.Array, jax.Array]]


def make_predict_fn(graphdef: nnx.GraphDef) -> PredictFn:
    """The pure function (params, batch) -> (probabilities [B], ids_in_range []) of a model."""

    def predict(params: nnx.State, batch: Batch) -> tuple[jax.Array, jax.Array]:
        model = nnx.merge(graphdef, params)
        return model(batch.dense, batch.sparse_ids), model.ids_in_range(batch.sparse_ids)

    return predict


def abstract_batch(config: DLRMConfig, batch_size: int) -> Batch:
    """Shapes and dtypes of a batch, for lowering without data."""
    return Batch(
        jax.ShapeDtypeStruct((batch_size, config.dense_features), np.float32),
        jax.ShapeDtypeStruct((batch_size, config.num_tables, config.pooling_factor), np.int32),
    )


def _checked(config: DLRMConfig, batch: Batch, probabilities, ids_in_range) -> jax.Array:
    if not bool(ids_in_range):
        raise IdOutOfRangeError(describe_out_of_range_ids(config, np.asarray(batch.sparse_ids)))
    return probabilities


class CompiledPredictor:
    """`predict` jitted for the CPU backend and compiled ahead of time, once per batch size.

    Example:
        >>> predictor = CompiledPredictor(model)
        >>> predictor.compile(64)            # seconds spent compiling
        >>> predictor(batch_of_64)           # [64] click probabilities; never compiles
    """

    def __init__(self, model: DLRM, batch_sizes: Iterable[int] = ()):
        self.config: DLRMConfig = model.config
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
            lowered = self._jitted.lower(self.params, abstract_batch(self.config, batch_size))
            self._executables[batch_size] = lowered.compile()
            self.compile_seconds[batch_size] = time.perf_counter() - start
        return self.compile_seconds[batch_size]

    def __call__(self, batch: Batch) -> jax.Array:
        """[B] click probabilities; raises IdOutOfRangeError for an id outside its table."""
        check_batch_shapes(self.config, batch)
        executable = self._executables.get(batch.batch_size)
        if executable is None:
            raise ValueError(
                f"No program compiled for batch size {batch.batch_size}; compiled sizes are "
                f"{self.batch_sizes}. Call compile({batch.batch_size}) first."
            )
        probabilities, ids_in_range = executable(self.params, batch)
        return _checked(self.config, batch, probabilities, ids_in_range)


class EagerPredictor:
    """The same predict function on the same parameters, run op by op (`jax.disable_jit`)."""

    def __init__(self, model: DLRM):
        self.config: DLRMConfig = model.config
        graphdef, self.params = nnx.split(model)
        self._predict = make_predict_fn(graphdef)

    def __call__(self, batch: Batch) -> jax.Array:
        """[B] click probabilities; raises IdOutOfRangeError for an id outside its table."""
        check_batch_shapes(self.config, batch)
        with jax.disable_jit():
            probabilities, ids_in_range = self._predict(self.params, batch)
        return _checked(self.config, batch, probabilities, ids_in_range)
