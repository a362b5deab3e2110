"""Inputs from a model's tables and features alone: abstract shapes and seeded synthetic batches.

Shapes: `B` batch, `F` dense features, `K` sparse features, `W` = sum_k C_k, the id block's width.
"""

from collections.abc import Callable, Mapping

import jax
import numpy as np

from recjax.inputs.features import FeatureLayout, Features
from recjax.inputs.id_distributions import IdDistribution, Uniform
from recjax.models.family import ModelConfig

# The median of a "lognormal" length as a fraction of the capacity, and the log-space spread.
LOGNORMAL_MEDIAN_FRACTION = 0.2
LOGNORMAL_SIGMA = 1.0


def lognormal_lengths(rng: np.random.Generator, capacity: int, size: int) -> np.ndarray:
    """[size] lengths with a long tail: round(exp(N(log(C / 5), 1))) clipped to [1, C].

    Most sequences are short and a few long, as users' histories are. For C = 100: median 20,
    mean about 31, one in ten at most 5, about one in twenty truncated at the capacity (the
    histories longer than C that a real system cuts to their last C behaviours).
    """
    median = max(capacity * LOGNORMAL_MEDIAN_FRACTION, 1.0)
    drawn = rng.lognormal(np.log(median), LOGNORMAL_SIGMA, size=size)
    return np.clip(np.rint(drawn), 1, capacity).astype(np.int32)


# FeatureConfig.length_distribution -> (rng, capacity, size) -> [size] lengths in [1, capacity].
# "uniform" is drawn with every feature's other lengths in one call (`synthetic_features`).
LENGTH_SAMPLERS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "lognormal": lognormal_lengths,
}


def _columns(config, values) -> np.ndarray:
    """[W] one value per id column: `values[k]` repeated over feature k's capacity."""
    capacities = [feature.capacity for feature in config.features]
    return np.repeat(np.asarray(values), capacities)


def abstract_features(config: ModelConfig, batch_size: int, labels: bool = False) -> Features:
    """Shapes and dtypes of a batch of `config`'s inputs, for lowering without data."""
    layout = FeatureLayout.of(config.features)
    weighted = any(feature.weighted for feature in config.features)
    return Features(
        dense=jax.ShapeDtypeStruct((batch_size, config.dense_features), np.float32),
        ids=jax.ShapeDtypeStruct((batch_size, layout.width), np.int32),
        lengths=jax.ShapeDtypeStruct((batch_size, len(layout.names)), np.int32),
        weights=jax.ShapeDtypeStruct((batch_size, layout.width), np.float32) if weighted else None,
        labels=(
            {head: jax.ShapeDtypeStruct((batch_size,), np.float32) for head in config.heads}
            if labels
            else None
        ),
        layout=layout,
    )


def table_columns(config: ModelConfig, table: str) -> np.ndarray:
    """The id-block columns of the features that look up `table`, in the model's feature order."""
    layout = FeatureLayout.of(config.features)
    return np.concatenate(
        [
            np.arange(column, column + feature.capacity)
            for feature, column in zip(config.features, layout.columns, strict=True)
            if feature.table == table
        ]
        or [np.zeros(0, np.int64)]
    )


def valid_positions(config: ModelConfig, lengths: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """[B, len(columns)] bool: which of `columns` hold a valid id (before each feature's length)."""
    layout = FeatureLayout.of(config.features)
    position = np.concatenate([np.arange(capacity) for capacity in layout.capacities])
    feature_of_column = _columns(config, np.arange(len(layout.capacities)))
    return position[columns][None, :] < np.asarray(lengths)[:, feature_of_column[columns]]


def _non_uniform(
    config: ModelConfig, ids: Mapping[str, IdDistribution] | None
) -> dict[str, IdDistribution]:
    if not ids:
        return {}
    names = [table.name for table in config.tables]
    unknown = sorted(set(ids) - set(names))
    if unknown:
        raise ValueError(
            f"Id distributions name tables {unknown} that {config.name} does not have; its tables "
            f"are {names}."
        )
    return {name: dist for name, dist in ids.items() if not isinstance(dist, Uniform)}


def _draw_table_ids(
    config: ModelConfig,
    distributions: Mapping[str, IdDistribution],
    seed: int,
    ids: np.ndarray,
    lengths: np.ndarray,
) -> None:
    """Overwrites, in place, the valid ids of every table of `distributions` with its stream."""
    for index, table in enumerate(config.tables):
        if table.name not in distributions:
            continue
        columns = table_columns(config, table.name)
        valid = valid_positions(config, lengths, columns)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        block = ids[:, columns]
        block[valid] = distributions[table.name].sample(table, int(valid.sum()), rng)
        ids[:, columns] = block


def synthetic_features(
    config: ModelConfig,
    batch_size: int,
    seed: int,
    labels: bool = False,
    ids: Mapping[str, IdDistribution] | None = None,
) -> Features:
    """A reproducible host batch of `config`'s inputs.

    Dense features are uniform in [0, 1); ids uniform over each feature's table unless `ids`
    gives the table another distribution; a fixed-length feature fills its capacity, any other
    draws its length from its `length_distribution` (uniformly from [1, C], or
    `lognormal_lengths`) or copies that of its `lengths_from`, and holds id 0 past it; weights (of
    weighted features) are uniform in [0, 1); labels, if asked for, are fair coin flips per head.
    Generated with NumPy's PCG64 in a few vectorized calls (batch 1024 of rmc2, 3.9 M ids, in tens
    of milliseconds); the same (config, batch_size, seed, ids) always gives the same batch.

    Args:
      ids: {table name: IdDistribution} (`recjax.inputs.id_distributions`); a table not named
        draws uniformly. A table's non-uniform ids are one stream over the batch's valid
        positions (`table_columns` order, sample by sample) from a generator of its own, seeded
        by (seed, the table's index): the rest of the batch (dense features, lengths, weights,
        labels, the other tables' ids) is the same whatever the distributions.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; got {batch_size}.")
    non_uniform = _non_uniform(config, ids)
    rng = np.random.default_rng(seed)
    layout = FeatureLayout.of(config.features)
    dense = rng.random((batch_size, config.dense_features), dtype=np.float32)
    rows = _columns(config, [config.table(feature.table).num_rows for feature in config.features])
    # Uniform ids for every column, as always (so that the rest of the batch keeps its values);
    # tables with another distribution overwrite theirs below.
    id_block = rng.integers(0, rows[None, :], size=(batch_size, layout.width)).astype(np.int32)
    capacities = np.asarray(layout.capacities)
    fixed = np.asarray([feature.fixed_length for feature in config.features])
    drawn = rng.integers(1, capacities[None, :] + 1, size=(batch_size, len(capacities)))
    lengths = np.where(fixed[None, :], capacities[None, :], drawn).astype(np.int32)
    for index, feature in enumerate(config.features):
        if not feature.fixed_length and feature.length_distribution in LENGTH_SAMPLERS:
            sampler = LENGTH_SAMPLERS[feature.length_distribution]
            lengths[:, index] = sampler(rng, feature.capacity, batch_size)
    for index, feature in enumerate(config.features):
        if feature.lengths_from is not None:
            lengths[:, index] = lengths[:, layout.index(feature.lengths_from)]
    if not fixed.all():
        position = np.concatenate([np.arange(capacity) for capacity in capacities])
        feature_of_column = _columns(config, np.arange(len(capacities)))
        valid = position[None, :] < lengths[:, feature_of_column]
        id_block = np.where(valid, id_block, 0).astype(np.int32)
    if non_uniform:
        _draw_table_ids(config, non_uniform, seed, id_block, lengths)
    weights = None
    if any(feature.weighted for feature in config.features):
        weights = rng.random((batch_size, layout.width), dtype=np.float32)
    label_values = None
    if labels:
        label_values = {
            head: rng.integers(0, 2, size=batch_size).astype(np.float32) for head in config.heads
        }
    return Features(dense, id_block, lengths, weights, label_values, layout)


def to_device(batch: Features) -> Features:
    """The batch as committed device arrays, transferred and ready (for timing)."""
    return jax.block_until_ready(jax.device_put(batch))
