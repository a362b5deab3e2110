"""Where training batches come from: Criteo-format files, or synthetic batches.

A source gives `(Features host batch with labels, position)` pairs; a position is a JSON-able
dict that restarts the source just after that batch (it goes into checkpoints):

    source = CriteoSource(paths, CriteoMapping(config), batch_size=256, seed=0)
    for batch, position in source.batches(start=None): ...
    for batch, position in source.batches(start=position): ...   # continues exactly

Evaluation reads held-out files once, in order (`eval_batches`), padding the last batch to the
batch size (one compiled program) and saying how many of its examples are real.
"""

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from recjax.inputs.features import Features
from recjax.inputs.synthetic import synthetic_features
from recjax.models.family import ModelConfig
from recjax.train.criteo import (
    DEFAULT_WINDOW_LINES,
    CriteoMapping,
    StreamPosition,
    criteo_batches,
)

Position = dict[str, int]


class BatchSource(Protocol):
    batch_size: int

    def batches(self, start: Position | None = None) -> Iterator[tuple[Features, Position]]:
        """Endless (batch, position after it) pairs, from `start` (None: the beginning)."""

    def describe(self) -> str:
        """One line for the run's header."""

    def settings(self) -> dict:
        """What must not change for a position to mean the same place (checked on resume)."""


@dataclasses.dataclass
class CriteoSource:
    """Shuffled, repeating batches of Criteo-format files mapped onto a model."""

    paths: Sequence[str]
    mapping: CriteoMapping
    batch_size: int
    seed: int = 0
    shuffle: bool = True
    window_lines: int = DEFAULT_WINDOW_LINES
    # What names the files in `settings()` (default: their paths): e.g. the arguments that
    # generated them, so that regenerated copies elsewhere count as the same data.
    identity: dict | None = None

    def batches(self, start: Position | None = None) -> Iterator[tuple[Features, Position]]:
        stream = criteo_batches(
            self.paths,
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            window_lines=self.window_lines,
            start=StreamPosition.from_json(start) if start else None,
        )
        for records, position in stream:
            yield self.mapping.features(records), position.to_json()

    def describe(self) -> str:
        return (
            f"{len(self.paths)} Criteo file(s), shuffled in windows of {self.window_lines:,} "
            f"lines (seed {self.seed}); {self.mapping.describe()}"
        )

    def settings(self) -> dict:
        return {
            "kind": "criteo",
            **({"files": self.identity} if self.identity else {"paths": list(self.paths)}),
            "batch_size": self.batch_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "window_lines": self.window_lines,
            "mapping": self.mapping.mapping,
            "categorical": self.mapping.categorical,
            "multi_hot": self.mapping.multi_hot,
        }


@dataclasses.dataclass
class SyntheticSource:
    """`variants` synthetic batches (`recjax.inputs.synthetic`, coin-flip labels), in turn.

    Uniform ids over every table (the latency benchmarks' inputs) and no preparation cost in the
    loop: for measuring training throughput, not for learning anything.
    """

    config: ModelConfig
    batch_size: int
    seed: int = 0
    variants: int = 8

    def __post_init__(self):
        if self.variants < 1:
            raise ValueError(f"variants must be >= 1; got {self.variants}.")
        self._cache: dict[int, Features] = {}

    def _variant(self, index: int) -> Features:
        if index not in self._cache:
            self._cache[index] = synthetic_features(
                self.config, self.batch_size, seed=self.seed * 1_000_003 + index, labels=True
            )
        return self._cache[index]

    def batches(self, start: Position | None = None) -> Iterator[tuple[Features, Position]]:
        step = int(start["batches"]) if start else 0
        while True:
            batch = self._variant(step % self.variants)
            step += 1
            yield batch, {"batches": step}

    def describe(self) -> str:
        return (
            f"synthetic: {self.variants} batches of uniform ids and coin-flip labels, in turn "
            f"(seed {self.seed})"
        )

    def settings(self) -> dict:
        return {
            "kind": "synthetic",
            "batch_size": self.batch_size,
            "seed": self.seed,
            "variants": self.variants,
        }


def pad_batch(batch: Features, batch_size: int) -> Features:
    """`batch` with its last example repeated up to `batch_size` examples."""
    count = batch.batch_size
    if count == batch_size:
        return batch
    index = np.minimum(np.arange(batch_size), count - 1)

    def pad(array):
        return None if array is None else np.asarray(array)[index]

    return dataclasses.replace(
        batch,
        dense=pad(batch.dense),
        ids=pad(batch.ids),
        lengths=pad(batch.lengths),
        weights=pad(batch.weights),
        labels=None if batch.labels is None else {k: pad(v) for k, v in batch.labels.items()},
    )


def eval_batches(
    paths: Sequence[str],
    mapping: CriteoMapping,
    batch_size: int,
    max_examples: int | None = None,
    window_lines: int = DEFAULT_WINDOW_LINES,
) -> Iterator[tuple[Features, int]]:
    """(batch padded to `batch_size`, how many of its examples are real) over the files once,
    in order, up to `max_examples` examples."""
    seen = 0
    stream = criteo_batches(
        paths,
        batch_size,
        shuffle=False,
        repeat=False,
        drop_remainder=False,
        window_lines=window_lines,
    )
    for records, _ in stream:
        if max_examples is not None:
            records = records.take(slice(0, max(max_examples - seen, 0)))
        if not len(records):
            return
        seen += len(records)
        yield pad_batch(mapping.features(records), batch_size), len(records)
