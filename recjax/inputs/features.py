"""Tables, features and the keyed batch that every model family takes.

Shapes: `B` batch, `F` dense features, `K` sparse features, `C_k` the capacity of feature k (the
most ids one sample may hold: the pooling factor L of a DLRM bag, or the length S of a behaviour
sequence), `D` embedding dim.

A sparse feature is a bag of ids per sample, looked up in a table. Its ids are held padded to the
feature's static capacity, with a length per sample (TorchRec's jagged values and lengths, padded so
that one batch size compiles once). All sparse features of a batch share one id block
[B, sum_k C_k]: feature k owns the columns [column_k, column_k + C_k). Features of equal capacity
laid out one after another therefore form a [B, K, C] block for free (a reshape), which is the
DLRM fast path; `ids_of` and `lengths_of` read one feature by name.

A feature is pooled (sum or mean of its rows, optionally weighted by a per-id weight) or kept as a
sequence ([B, S, D] rows plus lengths, for attention and recurrent models). Tables are bound to
features by name, so several features can share one table (a candidate item and the items of a
behaviour sequence, say); each table has its own rows, dim and dtype.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

# How a table's rows are stored (recjax.layers.quantization holds the codecs; docs/design/
# quantized-tables.md the layouts): floats as [N, D] arrays of their type; "int8" and "int4" as
# row-wise quantized uint8 rows [N, W] holding the D codes (int4: two per byte, low nibble first)
# followed by the row's float32 scale and bias (value = code * scale + bias).
TABLE_DTYPES = ("float32", "float16", "bfloat16", "int8", "int4")
FLOAT_TABLE_DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2}  # bytes per value
QUANTIZED_TABLE_DTYPES = {"int8": 8, "int4": 4}  # bits per code
SCALE_BIAS_BYTES = 8  # a float32 scale and a float32 bias after the codes of a quantized row
# Stored rows may be padded to a multiple of this many bytes (TableConfig.row_alignment), so that
# rows sit on fewer cache lines: a power of two up to 256; 1 packs them.
MAX_ROW_ALIGNMENT = 256
POOLINGS = ("sum", "mean", "none")
# How synthetic inputs draw the lengths of a feature that is not fixed-length (see
# `recjax.inputs.synthetic.LENGTH_SAMPLERS`).
LENGTH_DISTRIBUTIONS = ("uniform", "lognormal")


@dataclasses.dataclass(frozen=True)
class TableConfig:
    """One embedding table: `num_rows` rows of `dim` values of `dtype`.

    Attributes:
      name: unique within a model; features name it in `FeatureConfig.table`.
      num_rows: rows of the table; ids of its features lie in [0, num_rows).
      dim: D, the width of a row.
      dtype: how rows are stored: one of TABLE_DTYPES ("float32", "float16", "bfloat16", or
        row-wise quantized "int8" or "int4"); lookups always pool in float32.
      row_alignment: each stored row is padded with zeros to a multiple of this many bytes (a
        power of two up to 256; 1: packed). With 64-byte rows in a 64-byte aligned buffer every
        row is exactly one cache line (an int8 row of dim 32 is 40 bytes packed, and spans two
        lines 39 times in 64).
    """

    name: str
    num_rows: int
    dim: int
    dtype: str = "float32"
    row_alignment: int = 1

    def __post_init__(self):
        if self.num_rows <= 0 or self.dim <= 0:
            raise ValueError(
                f"Table {self.name!r} needs positive num_rows and dim; got num_rows="
                f"{self.num_rows}, dim={self.dim}."
            )
        if self.dtype not in TABLE_DTYPES:
            raise ValueError(
                f"Table {self.name!r}: unknown dtype {self.dtype!r}; expected one of "
                f"{TABLE_DTYPES}."
            )
        alignment = self.row_alignment
        if not 1 <= alignment <= MAX_ROW_ALIGNMENT or alignment & (alignment - 1):
            raise ValueError(
                f"Table {self.name!r}: row_alignment must be a power of two from 1 to "
                f"{MAX_ROW_ALIGNMENT}; got {alignment}."
            )

    @property
    def row_bytes(self) -> int:
        """Bytes of one stored row: a quantized row's scale and bias, and padding, included."""
        return row_bytes(self.dim, self.dtype, self.row_alignment)

    @property
    def num_bytes(self) -> int:
        return self.num_rows * self.row_bytes


def packed_row_bytes(dim: int, dtype: str) -> int:
    """Bytes of one row of `dim` values without padding: D x 4 (float32), D x 2 (float16,
    bfloat16), D + 8 (int8) or ceil(D / 2) + 8 (int4), the last two with their float32 scale and
    bias."""
    if dtype in FLOAT_TABLE_DTYPES:
        return dim * FLOAT_TABLE_DTYPES[dtype]
    if dtype in QUANTIZED_TABLE_DTYPES:
        codes_per_byte = 8 // QUANTIZED_TABLE_DTYPES[dtype]
        return -(-dim // codes_per_byte) + SCALE_BIAS_BYTES
    raise ValueError(f"Unknown table dtype {dtype!r}; expected one of {TABLE_DTYPES}.")


def row_bytes(dim: int, dtype: str, row_alignment: int = 1) -> int:
    """Bytes of one stored row: `packed_row_bytes` rounded up to a multiple of `row_alignment`."""
    return -(-packed_row_bytes(dim, dtype) // row_alignment) * row_alignment


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """One sparse feature: up to `capacity` ids per sample, looked up in `table`.

    Attributes:
      name: unique within a model; the key of the feature in a batch.
      table: the name of the table the ids index.
      capacity: C, the most ids one sample holds (the pooling factor of a bag, the length of a
        sequence); ids are padded to it.
      pooling: "sum" or "mean" of the looked-up rows, or "none" to keep the [C, D] rows as a
        sequence (with the sample's length).
      weighted: pooled rows are scaled by a per-id weight before summing (TorchRec's weighted
        bags); only for "sum" and "mean".
      fixed_length: every sample holds exactly `capacity` ids (a DLRM bag); synthetic inputs then
        fill every position, else they draw lengths from `length_distribution`.
      length_distribution: how synthetic inputs draw the lengths of a feature that is not
        fixed-length: "uniform" in [1, C], or "lognormal", a long tail (median C / 5, most
        sequences short, a few at the capacity); see `recjax.inputs.synthetic`. Real batches may
        hold any length in [0, C] whatever this says.
      lengths_from: the name of an earlier feature whose lengths this one shares, e.g. the
        category ids of the same behaviours as a sequence of item ids: synthetic inputs copy that
        feature's lengths, and the input checks reject a batch where they differ. Both features
        must have the same capacity and neither be fixed-length.
    """

    name: str
    table: str
    capacity: int
    pooling: str = "sum"
    weighted: bool = False
    fixed_length: bool = True
    length_distribution: str = "uniform"
    lengths_from: str | None = None

    def __post_init__(self):
        if self.capacity <= 0:
            raise ValueError(
                f"Feature {self.name!r} needs a positive capacity; got {self.capacity}."
            )
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"Feature {self.name!r}: unknown pooling {self.pooling!r}; expected one of "
                f"{POOLINGS}."
            )
        if self.weighted and self.pooling == "none":
            raise ValueError(
                f"Feature {self.name!r}: only pooled features can be weighted; got "
                "pooling='none' with weighted=True."
            )
        if self.length_distribution not in LENGTH_DISTRIBUTIONS:
            raise ValueError(
                f"Feature {self.name!r}: unknown length_distribution "
                f"{self.length_distribution!r}; expected one of {LENGTH_DISTRIBUTIONS}."
            )
        if self.length_distribution != "uniform" and (self.fixed_length or self.lengths_from):
            raise ValueError(
                f"Feature {self.name!r}: length_distribution={self.length_distribution!r} only "
                "applies to a feature that draws its own lengths (fixed_length=False and no "
                "lengths_from)."
            )
        if self.lengths_from is not None and (self.fixed_length or self.lengths_from == self.name):
            raise ValueError(
                f"Feature {self.name!r}: lengths_from={self.lengths_from!r} needs "
                "fixed_length=False and another feature's name."
            )


def check_tables_and_features(
    model: str, tables: Sequence[TableConfig], features: Sequence[FeatureConfig]
) -> None:
    """Raises ValueError unless names are unique, every feature names an existing table, and
    every `lengths_from` names an earlier feature that can lend its lengths."""
    for kind, items in (("table", tables), ("feature", features)):
        names = [item.name for item in items]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"{model}: {kind} names must be unique; repeated: {duplicates}.")
    table_names = {table.name for table in tables}
    earlier: dict[str, FeatureConfig] = {}
    for feature in features:
        if feature.table not in table_names:
            raise ValueError(
                f"{model}: feature {feature.name!r} names table {feature.table!r}, which does not "
                f"exist; tables are {sorted(table_names)}."
            )
        source = earlier.get(feature.lengths_from) if feature.lengths_from else None
        if feature.lengths_from and (
            source is None
            or source.fixed_length
            or source.lengths_from
            or source.capacity != feature.capacity
        ):
            raise ValueError(
                f"{model}: feature {feature.name!r} takes its lengths from "
                f"{feature.lengths_from!r}, which must be an earlier feature of the same capacity "
                f"({feature.capacity}) that draws its own lengths (fixed_length=False, no "
                f"lengths_from); earlier features: {sorted(earlier)}."
            )
        earlier[feature.name] = feature


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
    """Where each sparse feature sits in a batch's id block: static, hashable metadata.

    Attributes:
      names: the K feature names, in column order.
      capacities: C_k of each feature.
    """

    names: tuple[str, ...]
    capacities: tuple[int, ...]

    @classmethod
    def of(cls, features: Sequence[FeatureConfig]) -> "FeatureLayout":
        return cls(
            tuple(feature.name for feature in features),
            tuple(feature.capacity for feature in features),
        )

    @property
    def columns(self) -> tuple[int, ...]:
        """The first column of each feature in the id block."""
        return tuple(int(column) for column in np.cumsum((0, *self.capacities))[:-1])

    @property
    def width(self) -> int:
        """sum_k C_k: the width of the id block."""
        return sum(self.capacities)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise KeyError(f"No sparse feature {name!r}; the batch holds {list(self.names)}.")
        return self.names.index(name)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Features:
    """One batch of model inputs (a pytree): dense features, sparse features by name, labels.

    Attributes:
      dense: [B, F] float32 dense features ([B, 0] for a model without any).
      ids: [B, sum_k C_k] int32, feature k's ids in its columns, padded past its length.
      lengths: [B, K] int32, the number of valid ids of each sample and feature, in [0, C_k].
      weights: [B, sum_k C_k] float32 per-id weights of weighted features (ignored elsewhere), or
        None when no feature of the model is weighted.
      labels: {task: [B] float32 in {0, 1}}, or None at inference.
      layout: the feature names and capacities (static).
    """

    dense: Any
    ids: Any
    lengths: Any
    weights: Any = None
    labels: Any = None
    layout: FeatureLayout = dataclasses.field(default=None, metadata={"static": True})

    @property
    def batch_size(self) -> int:
        return int(self.dense.shape[0])

    def ids_of(self, name: str):
        """[B, C] ids of feature `name` (padding included)."""
        index = self.layout.index(name)
        column = self.layout.columns[index]
        return self.ids[:, column : column + self.layout.capacities[index]]

    def lengths_of(self, name: str):
        """[B] lengths of feature `name`."""
        return self.lengths[:, self.layout.index(name)]

    def without_labels(self) -> "Features":
        return self if self.labels is None else dataclasses.replace(self, labels=None)


def make_features(
    dense: np.ndarray,
    sparse: Mapping[str, tuple[np.ndarray, np.ndarray]],
    features: Sequence[FeatureConfig],
    weights: Mapping[str, np.ndarray] | None = None,
    labels: Mapping[str, np.ndarray] | None = None,
) -> Features:
    """A host batch from per-feature arrays, in the model's feature order.

    Args:
      dense: [B, F] float32.
      sparse: {name: (ids [B, C] int32 padded to the feature's capacity, lengths [B] int32)} for
        every feature of `features`.
      features: the model's feature configs (their order is the column order).
      weights: {name: [B, C] float32} for the weighted features, if any.
      labels: {task: [B]} or None.
    """
    missing = [feature.name for feature in features if feature.name not in sparse]
    unknown = sorted(set(sparse) - {feature.name for feature in features})
    if missing or unknown:
        raise ValueError(f"Sparse features: missing {missing}, unknown {unknown}.")
    batch = dense.shape[0]
    blocks, lengths, weight_blocks = [], [], []
    for feature in features:
        ids, feature_lengths = sparse[feature.name]
        if ids.shape != (batch, feature.capacity) or feature_lengths.shape != (batch,):
            raise ValueError(
                f"Feature {feature.name!r}: ids must be [B, C] = {[batch, feature.capacity]} and "
                f"lengths [B] = [{batch}]; got {list(ids.shape)} and {list(feature_lengths.shape)}."
            )
        blocks.append(np.asarray(ids, np.int32))
        lengths.append(np.asarray(feature_lengths, np.int32))
        if weights is not None and feature.weighted:
            weight_blocks.append(np.asarray(weights[feature.name], np.float32))
        elif weights is not None:
            weight_blocks.append(np.ones((batch, feature.capacity), np.float32))
    return Features(
        dense=np.asarray(dense, np.float32),
        ids=np.concatenate(blocks, axis=1),
        lengths=np.stack(lengths, axis=1),
        weights=np.concatenate(weight_blocks, axis=1) if weights is not None else None,
        labels=labels,
        layout=FeatureLayout.of(features),
    )
