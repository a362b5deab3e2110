"""Input checks: shapes before a call, one fused validity bool inside it, a message after it.

XLA's gather clamps an out-of-range index instead of failing, and a NaN dense feature silently
becomes a NaN prediction. The predict program therefore also computes one bool, `inputs_valid`:
every id at a valid position lies within its table, every length lies in [0, C_k] (and equals C_k
for a fixed-length feature, and the length of its `lengths_from` feature for one that shares
another's lengths), and every dense value (and weight) is finite. XLA fuses the compares
into one reduction that reads 4 bytes per id, against the 64 to 512 bytes per id that the gather
reads. When it is false, `describe_invalid_inputs` finds the first problem on the host and names it.

Shapes: `B` batch, `F` dense features, `K` sparse features, `W` = sum_k C_k.
"""

import jax
import jax.numpy as jnp
import numpy as np

from recjax.inputs.features import FeatureLayout, Features
from recjax.models.family import ModelConfig


class InvalidInputError(ValueError):
    """An id outside its table, a length outside [0, C], or a non-finite dense value."""


def _column_tables(config: ModelConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[W] rows of each id column's table, its position in its feature, and its feature."""
    capacities = [feature.capacity for feature in config.features]
    rows = [config.table(feature.table).num_rows for feature in config.features]
    return (
        np.repeat(np.asarray(rows, np.int32), capacities),
        np.concatenate([np.arange(capacity, dtype=np.int32) for capacity in capacities]),
        np.repeat(np.arange(len(capacities)), capacities),
    )


class BatchSpec:
    """What a model's batches must look like, worked out once (the predictors check every call).

    `check(batch)` raises ValueError unless `batch` has the model's feature layout and the shapes
    and dtypes that go with it, naming the first mismatch.
    """

    def __init__(self, config: ModelConfig):
        self.name = config.name
        self.layout = FeatureLayout.of(config.features)
        self.widths = {
            "dense": config.dense_features,
            "ids": self.layout.width,
            "lengths": len(self.layout.names),
        }
        self.dtypes = {"dense": np.float32, "ids": np.int32, "lengths": np.int32}
        if any(feature.weighted for feature in config.features):
            self.widths["weights"] = self.layout.width
            self.dtypes["weights"] = np.float32

    def check(self, batch: Features) -> None:
        if batch.layout != self.layout:
            raise ValueError(
                f"{self.name}: the batch holds sparse features {list(batch.layout.names)} with "
                f"capacities {list(batch.layout.capacities)}; the model takes "
                f"{list(self.layout.names)} with capacities {list(self.layout.capacities)}."
            )
        size = batch.dense.shape[0] if len(batch.dense.shape) == 2 else None
        for name, width in self.widths.items():
            array = getattr(batch, name)
            if array is None:
                raise ValueError(f"{self.name}: the model has weighted features; {name} is None.")
            if size is None or array.shape != (size, width):
                raise ValueError(
                    f"{self.name}: {name} must have shape ['B', {width}]; got {list(array.shape)}."
                )
            if array.dtype != self.dtypes[name]:
                raise ValueError(
                    f"{self.name}: {name} must be {np.dtype(self.dtypes[name])}; got {array.dtype}."
                )


def check_batch_shapes(config: ModelConfig, batch: Features) -> None:
    """Raises ValueError unless `batch` has the layout, shapes and dtypes that `config` takes."""
    BatchSpec(config).check(batch)


def inputs_valid(config: ModelConfig, batch: Features) -> jax.Array:
    """A scalar bool, computed inside the jitted program: see the module docstring."""
    column_rows, column_position, column_feature = _column_tables(config)
    capacities = jnp.asarray([feature.capacity for feature in config.features], jnp.int32)
    fixed = [feature.fixed_length for feature in config.features]
    ids = batch.ids
    in_table = (ids >= 0) & (ids < jnp.asarray(column_rows)[None, :])
    if all(fixed):
        lengths_ok = jnp.all(batch.lengths == capacities[None, :])
    else:
        valid = jnp.asarray(column_position)[None, :] < batch.lengths[:, column_feature]
        in_table = in_table | ~valid
        lower = jnp.where(jnp.asarray(fixed), capacities, 0)[None, :]
        lengths_ok = jnp.all((batch.lengths >= lower) & (batch.lengths <= capacities[None, :]))
        shared = _shared_lengths(config)
        if shared:
            borrowers, lenders = (jnp.asarray(indices) for indices in zip(*shared, strict=True))
            lengths_ok = lengths_ok & jnp.all(
                batch.lengths[:, borrowers] == batch.lengths[:, lenders]
            )
    finite = jnp.all(jnp.isfinite(batch.dense))
    if batch.weights is not None:
        finite = finite & jnp.all(jnp.isfinite(batch.weights))
    return jnp.all(in_table) & lengths_ok & finite


def _shared_lengths(config: ModelConfig) -> list[tuple[int, int]]:
    """(index of a feature with `lengths_from`, index of the feature it names), in feature order."""
    index = {feature.name: position for position, feature in enumerate(config.features)}
    return [
        (position, index[feature.lengths_from])
        for position, feature in enumerate(config.features)
        if feature.lengths_from is not None
    ]


def describe_invalid_inputs(config: ModelConfig, batch: Features) -> str:
    """A message naming the first invalid value, where it is, and what is accepted."""
    dense = np.asarray(batch.dense)
    lengths = np.asarray(batch.lengths)
    ids = np.asarray(batch.ids)
    for name, values in (("dense feature", dense), ("weight", batch.weights)):
        if values is None:
            continue
        bad = ~np.isfinite(np.asarray(values))
        if bad.any():
            sample, column = (int(i) for i in np.argwhere(bad)[0])
            return (
                f"{int(bad.sum())} non-finite {name}(s); the first is "
                f"{np.asarray(values)[sample, column]} at [sample {sample}, column {column}]; "
                f"{name}s must be finite."
            )
    for index, feature in enumerate(config.features):
        low = feature.capacity if feature.fixed_length else 0
        bad = (lengths[:, index] < low) | (lengths[:, index] > feature.capacity)
        if bad.any():
            sample = int(np.argwhere(bad)[0][0])
            accepted = (
                f"exactly {feature.capacity} (a fixed-length feature)"
                if feature.fixed_length
                else f"[0, {feature.capacity}]"
            )
            return (
                f"feature {feature.name!r} has length {int(lengths[sample, index])} at sample "
                f"{sample}; it accepts {accepted}."
            )
    for borrower, lender in _shared_lengths(config):
        bad = lengths[:, borrower] != lengths[:, lender]
        if bad.any():
            sample = int(np.argwhere(bad)[0][0])
            feature, source = config.features[borrower], config.features[lender]
            return (
                f"feature {feature.name!r} has length {int(lengths[sample, borrower])} at sample "
                f"{sample}, but it shares the lengths of feature {source.name!r}, which has "
                f"{int(lengths[sample, lender])}; the two must be equal."
            )
    column_rows, column_position, column_feature = _column_tables(config)
    valid = column_position[None, :] < lengths[:, column_feature]
    bad = valid & ((ids < 0) | (ids >= column_rows[None, :]))
    if bad.any():
        sample, column = (int(i) for i in np.argwhere(bad)[0])
        feature = config.features[column_feature[column]]
        table = config.table(feature.table)
        return (
            f"{int(bad.sum())} sparse id(s) out of range; the first is {int(ids[sample, column])} "
            f"at [sample {sample}, feature {feature.name!r}, position {column_position[column]}], "
            f"but table {table.name!r} accepts ids in [0, {table.num_rows})."
        )
    return "all inputs are valid"
