"""What a worker runs: one shared compiled model on inputs generated before serving starts."""

import itertools
import time
from collections.abc import Iterable, Mapping

import jax
from flax import nnx

from recjax.inputs.features import Features
from recjax.inputs.id_distributions import IdDistribution
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.runtime.inference import CompiledPredictor, Predictions


class ModelWorkload:
    """Serves a padded sub-batch with a `CompiledPredictor` compiled for every padded size.

    Works for a model of any family: the inputs follow from `model.config` alone
    (`synthetic_features`). They are generated and placed on the device in the constructor:
    `variants` different synthetic batches per padded size, used in turn, so that small batches do
    not find the same embedding rows in the cache on every call and the timed path generates
    nothing. The predictor (and its parameters) is shared by all worker threads; it never compiles
    while serving, because it refuses a batch size it was not compiled for. `ids` gives each
    table's id distribution (`recjax.inputs.id_distributions`; default uniform).

    Example:
        >>> workload = ModelWorkload(model, sizes=(1, 2, 4, 8), seed=0, variants=8)
        >>> workload(8)   # {head: [8] probabilities}, returned once every head is ready
    """

    def __init__(
        self,
        model: nnx.Module,
        sizes: Iterable[int],
        seed: int,
        variants: int,
        ids: Mapping[str, IdDistribution] | None = None,
    ):
        if variants < 1:
            raise ValueError(f"variants must be >= 1; got {variants}.")
        self.predictor = CompiledPredictor(model)
        self.sizes = tuple(sorted(set(sizes)))
        config = model.config
        self.inputs: dict[int, list[Features]] = {}
        start = time.perf_counter()
        for size in self.sizes:
            self.predictor.compile(size)
            self.inputs[size] = [
                to_device(
                    synthetic_features(
                        config, size, seed=seed + 1_000_003 * variant + size, ids=ids
                    )
                )
                for variant in range(variants)
            ]
        self.setup_seconds = time.perf_counter() - start
        self._turn = itertools.count()  # next() on a count is atomic under the GIL

    @property
    def compile_seconds(self) -> float:
        return float(sum(self.predictor.compile_seconds.values()))

    def __call__(self, padded_size: int) -> Predictions:
        """{head: [padded_size] probabilities} of the next input variant, all heads ready."""
        batches = self.inputs[padded_size]
        return jax.block_until_ready(self.predictor(batches[next(self._turn) % len(batches)]))

    def warm_up(self, calls_per_size: int) -> None:
        """Runs every padded size `calls_per_size` times: first-call costs stay out of the runs."""
        for size in self.sizes:
            for _ in range(calls_per_size):
                self(size)
