"""The model-family contract: what every family provides, and all the infrastructure relies on.

A family is one module under `recjax/models/` with a config class derived from `ModelConfig` (a
frozen, validated dataclass) and an NNX module. The config knows everything the infrastructure
needs, so inference, memory checks, the latency sweep, the breakdown, co-location and the load
generator never name a family:

  config.build(rngs)                 the NNX module; module(batch) -> {head: logits [B]}
  config.tables, config.features     embedding tables and the sparse features bound to them
  config.dense_features              F, the width of the dense input
  config.heads                       the output heads (tasks), e.g. ("click",)
  config.stages()                    named pure sub-programs, for `benchmarks.breakdown`
  config.cost()                      parameter bytes, FLOPs and embedding bytes per sample
  config.architecture_summary()      one line in the paper's notation

Abstract and synthetic inputs follow from the tables and features (`recjax.inputs.synthetic`).
Shapes: `B` batch, `F` dense features, `D` embedding dim.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import numpy as np
from flax import nnx

from recjax.inputs.features import (
    TABLE_DTYPES,
    FeatureConfig,
    TableConfig,
    check_tables_and_features,
)
from recjax.layers.embedding_bag import check_lowering

STAGE_KINDS = ("embedding", "fc", "interaction", "other")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One named part of a model's forward pass, compiled and timed on its own by the breakdown.

    Attributes:
      name: e.g. "embedding", "bottom_mlp", "interaction", "top_mlp".
      inputs: the values it reads: "batch" (the `Features`) or the names of earlier stages.
      apply: (model, *inputs) -> its output, a pure function of the model's parameters.
      kind: "embedding", "fc" (fully connected layers), "interaction" or "other"; the breakdown
        sums the shares of each kind (the paper's FC share).
    """

    name: str
    inputs: tuple[str, ...]
    apply: Callable[..., Any]
    kind: str

    def __post_init__(self):
        if self.kind not in STAGE_KINDS:
            raise ValueError(
                f"Stage {self.name!r}: unknown kind {self.kind!r}; expected one of {STAGE_KINDS}."
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The fields and behaviour every family's config shares; subclasses add their architecture.

    Attributes:
      name: the preset's name, e.g. "rmc2".
      tables: the embedding tables.
      features: the sparse features, each bound to a table; their order is the batch's.
      dense_features: F, the width of the dense input (0 for none).
      embedding_lowering: how embedding bags are expressed for XLA; see
        `recjax.layers.embedding_bag.LOWERINGS` ("auto": the native kernel when built).
      table_dtype: None (each table keeps its own `TableConfig.dtype`), or a dtype of
        `recjax.inputs.features.TABLE_DTYPES` given to every table when the config is made
        (`--override=table_dtype=int8`): `tables` then holds the tables with that dtype.
      table_row_alignment: None (each table keeps its own `TableConfig.row_alignment`), or a
        power of two given to every table when the config is made: stored rows padded to a
        multiple of that many bytes (`--override=table_row_alignment=64`).
      mlp_dtype: the dtype of the fully connected layers' kernels, one of the family's
        `MLP_DTYPES` ("float32"; a family that supports it: "bfloat16").
    """

    name: str
    tables: tuple[TableConfig, ...]
    features: tuple[FeatureConfig, ...]
    dense_features: int
    embedding_lowering: str = "auto"
    table_dtype: str | None = None
    table_row_alignment: int | None = None
    mlp_dtype: str = "float32"

    # Subclasses override these.
    heads: tuple[str, ...] = ("click",)
    # The kernel dtypes the family's fully connected layers support (`mlp_dtype`).
    MLP_DTYPES: ClassVar[tuple[str, ...]] = ("float32",)

    def __post_init__(self):
        if self.table_dtype is not None:
            if self.table_dtype not in TABLE_DTYPES:
                raise ValueError(
                    f"{self.name}: unknown table_dtype {self.table_dtype!r}; expected one of "
                    f"{TABLE_DTYPES}."
                )
            tables = tuple(
                dataclasses.replace(table, dtype=self.table_dtype) for table in self.tables
            )
            object.__setattr__(self, "tables", tables)  # frozen: set once, before use
        if self.table_row_alignment is not None:
            tables = tuple(
                dataclasses.replace(table, row_alignment=self.table_row_alignment)
                for table in self.tables
            )
            object.__setattr__(self, "tables", tables)
        if self.mlp_dtype not in self.MLP_DTYPES:
            raise ValueError(
                f"{self.name}: mlp_dtype {self.mlp_dtype!r} is not supported by "
                f"{type(self).__name__}; expected one of {self.MLP_DTYPES}."
            )
        if self.dense_features < 0:
            raise ValueError(
                f"{self.name}: dense_features must be >= 0; got {self.dense_features}."
            )
        if not self.tables or not self.features:
            raise ValueError(f"{self.name}: a model needs at least one table and one feature.")
        check_tables_and_features(self.name, self.tables, self.features)
        check_lowering(self.embedding_lowering)

    # --- what a family implements ---------------------------------------------------------------

    def build(self, rngs: nnx.Rngs) -> nnx.Module:
        """The family's NNX module with fresh parameters; module(batch) -> {head: logits [B]}."""
        raise NotImplementedError

    def stages(self) -> tuple[Stage, ...]:
        """The forward pass as named pure sub-programs, in order; the last gives the heads."""
        raise NotImplementedError

    def dense_flops_per_sample(self) -> int:
        """FLOPs of the fully connected layers and interactions for one sample (a multiply-add
        counts as two)."""
        raise NotImplementedError

    def architecture_summary(self) -> str:
        """One line in the paper's notation."""
        raise NotImplementedError

    # --- what follows from the contract --------------------------------------------------------

    def table(self, name: str) -> TableConfig:
        return next(table for table in self.tables if table.name == name)

    @property
    def table_bytes(self) -> int:
        """Bytes of every stored table (quantized rows with their scales and biases)."""
        return sum(table.num_bytes for table in self.tables)

    @property
    def parameter_bytes(self) -> int:
        """Bytes of every parameter: tables, weights and biases (from the abstract model)."""
        return _parameter_bytes(self)

    @property
    def embedding_bytes_per_sample(self) -> int:
        """Bytes of embedding rows gathered per sample at full capacity: sum_k C_k x row bytes
        (stored bytes: a quantized row's scale and bias included)."""
        return sum(
            feature.capacity * self.table(feature.table).row_bytes for feature in self.features
        )

    @property
    def lookups_per_sample(self) -> int:
        return sum(feature.capacity for feature in self.features)

    def cost(self) -> dict[str, int]:
        """The preset's size and per-sample cost, for reports (bytes as stored)."""
        return {
            "parameter_bytes": self.parameter_bytes,
            "table_bytes": self.table_bytes,
            "dense_flops_per_sample": self.dense_flops_per_sample(),
            "embedding_bytes_per_sample": self.embedding_bytes_per_sample,
            "lookups_per_sample": self.lookups_per_sample,
        }


def abstract_model(config: ModelConfig) -> nnx.Module:
    """The model with every parameter a `jax.ShapeDtypeStruct`: shapes without allocation."""
    return nnx.eval_shape(lambda: config.build(nnx.Rngs(0)))


def float32_config(config: ModelConfig) -> ModelConfig:
    """`config` with packed float32 tables and float32 fully connected layers: the model that
    post-training quantization starts from (`recjax.runtime.quantize`)."""
    return dataclasses.replace(
        config, table_dtype="float32", table_row_alignment=1, mlp_dtype="float32"
    )


@functools.cache
def _parameter_bytes(config: ModelConfig) -> int:
    state = nnx.state(abstract_model(config), nnx.Param)
    return sum(
        int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(state)
    )
