"""Wide & Deep (Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016).

    sparse features ─► sparse arch ─► [B, sum_k D_k] ─┐
    (K bags of C ids)  (embeddings)                   ├─► concat ─► deep arch (MLP) ─► [B] ─┐
    dense [B, F] ─────────────────────────────────────┘   [B, F + sum_k D_k]               ├─► logit
    sparse features ─► wide arch (one weight per id, dim-1 tables, summed) ─► [B] ─────────┘   [B]

Section 3 of the paper: the wide component is a linear model w^T x over the sparse features
(one weight per id; the paper also feeds it cross-product transformations, which are features of
their own here), the deep component a feed-forward network over the dense features and the
embeddings of the sparse features (3.2: ReLU hidden layers), and the two are joined in one
logistic unit, eq. 3: P(Y = 1 | x) = sigmoid(w_wide^T x + w_deep^T a^(l_f) + b). recjax's deep MLP
ends in one unit whose bias is the b of eq. 3: the wide part has no bias of its own.

The wide weights are tables of dim 1 in the same `EmbeddingCollection` as the embeddings
(`recjax.layers.wide`): `wide_tables` names the wide table of each sparse feature, which reads the
feature's ids a second time. With `wide_tables=()` the model is deep only, as DeepRecSys's "wnd"
(Gupta et al., ISCA 2020), which concatenates the dense features and embeddings into the MLP and
has no wide part.

Shapes: `B` batch, `F` dense features, `K` sparse features, `C` ids per feature, `D_k` the
embedding dim of feature k.
"""

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from recjax.inputs.features import FeatureConfig, Features, TableConfig
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.mlp import MLP, mlp_flops
from recjax.layers.wide import WideArch
from recjax.models.family import ModelConfig, Stage

WIDE_DIM = 1  # one weight per id


def check_layer_sizes(name: str, field: str, sizes: tuple[int, ...], ends_in_logit: bool) -> None:
    """Raises ValueError unless `sizes` is non-empty and positive (and ends in 1 if a logit)."""
    if not sizes or min(sizes) <= 0:
        raise ValueError(
            f"{name}: {field} must be a non-empty tuple of positive layer widths; got {sizes}."
        )
    if ends_in_logit and sizes[-1] != 1:
        raise ValueError(f"{name}: {field} must end in one unit (the logit); got {sizes}.")


def check_wide_and_deep_inputs(config: ModelConfig, wide_tables: tuple[str, ...]) -> None:
    """Raises ValueError unless every sparse feature is pooled and `wide_tables` fits the features.

    `wide_tables` is empty (no wide part) or names, for each feature in order, a table of dim 1 with
    the rows of the feature's own table (the same ids index both), read by no feature.
    """
    sequences = [feature.name for feature in config.features if feature.pooling == "none"]
    if sequences:
        raise ValueError(
            f"{config.name}: every sparse feature of a Wide & Deep model is pooled (pooling 'sum' "
            f"or 'mean'); got sequence features {sequences}."
        )
    if not wide_tables:
        return
    if len(wide_tables) != len(config.features):
        raise ValueError(
            f"{config.name}: wide_tables names one wide table per sparse feature, in feature "
            f"order ({len(config.features)}), or none; got {len(wide_tables)}."
        )
    table_names = {table.name for table in config.tables}
    read = {feature.table for feature in config.features}
    for feature, wide_table in zip(config.features, wide_tables, strict=True):
        if wide_table not in table_names:
            raise ValueError(
                f"{config.name}: wide_tables names {wide_table!r} for feature {feature.name!r}, "
                f"which is not a table; tables are {sorted(table_names)}."
            )
        table, own = config.table(wide_table), config.table(feature.table)
        if table.dim != WIDE_DIM:
            raise ValueError(
                f"{config.name}: wide table {wide_table!r} must have dim {WIDE_DIM} (one weight "
                f"per id); got dim {table.dim}."
            )
        if table.num_rows != own.num_rows:
            raise ValueError(
                f"{config.name}: wide table {wide_table!r} must have the rows of table "
                f"{own.name!r} ({own.num_rows}) of feature {feature.name!r}, whose ids it "
                f"shares; got {table.num_rows}."
            )
        if wide_table in read:
            raise ValueError(
                f"{config.name}: wide table {wide_table!r} is also read by a sparse feature; "
                "wide tables hold only the wide weights."
            )


def deep_input_width(config: ModelConfig) -> int:
    """F + sum_k D_k: the dense features and every sparse feature's embedding, concatenated."""
    return config.dense_features + sum(
        config.table(feature.table).dim for feature in config.features
    )


def tables_summary(config: ModelConfig, wide_tables: tuple[str, ...]) -> str:
    """The embedding tables in short, e.g. '41 x 500,000 + 2 x 5,000,000 rows x 32 dim'."""
    counts: dict[tuple[int, int], int] = {}
    for table in config.tables:
        if table.name not in wide_tables:
            counts[(table.num_rows, table.dim)] = counts.get((table.num_rows, table.dim), 0) + 1
    dims = sorted({dim for _, dim in counts})
    if len(dims) == 1:
        rows = " + ".join(f"{count} x {rows:,}" for (rows, _), count in counts.items())
        return f"{rows} rows x {dims[0]} dim"
    return " + ".join(f"{count} x {rows:,} x {dim}" for (rows, dim), count in counts.items())


def ids_per_feature(config: ModelConfig) -> str:
    """e.g. '1 id/feature' or '1,20 ids/feature': the features' capacities."""
    capacities = sorted({feature.capacity for feature in config.features})
    unit = "id" if capacities == [1] else "ids"
    return f"{','.join(str(c) for c in capacities)} {unit}/feature"


def one_id_features(
    prefix: str, rows: Sequence[int], dim: int, wide: bool = True
) -> tuple[tuple[TableConfig, ...], tuple[FeatureConfig, ...], tuple[str, ...]]:
    """One table per entry of `rows` (prefix_0, prefix_1, ...), each read by one feature of its name
    holding one id per sample, and with `wide` a dim-1 wide table for each (prefix_0_wide, ...).

    Returns (tables, features, wide_tables): DeepRecSys's Wide & Deep inputs.
    """
    tables = tuple(TableConfig(f"{prefix}_{index}", count, dim) for index, count in enumerate(rows))
    features = tuple(FeatureConfig(table.name, table.name, capacity=1) for table in tables)
    if not wide:
        return tables, features, ()
    wide_tables = tuple(
        TableConfig(f"{table.name}_wide", table.num_rows, WIDE_DIM) for table in tables
    )
    return tables + wide_tables, features, tuple(table.name for table in wide_tables)


def wide_lookups_per_sample(config: ModelConfig, wide_tables: tuple[str, ...]) -> int:
    """Rows the wide part gathers per sample: each feature's ids once more."""
    return sum(feature.capacity for feature in config.features) if wide_tables else 0


def wide_bytes_per_sample(config: ModelConfig, wide_tables: tuple[str, ...]) -> int:
    """Bytes of wide weights gathered per sample at full capacity."""
    if not wide_tables:
        return 0
    return sum(
        feature.capacity * config.table(table).row_bytes
        for feature, table in zip(config.features, wide_tables, strict=True)
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class WideDeepConfig(ModelConfig):
    """The architecture of one Wide & Deep model (see `ModelConfig` for the shared fields).

    Attributes:
      deep_mlp: output widths of the deep MLP's layers, ReLU between them; the last is 1 (the deep
        logit). Its input width is F + sum_k D_k (`deep_in_features`).
      wide_tables: the wide (dim-1) table of each sparse feature, in feature order, or () for no
        wide part. Wide tables are tables of `tables` read by no feature.
    """

    deep_mlp: tuple[int, ...]
    wide_tables: tuple[str, ...]

    def __post_init__(self):
        super().__post_init__()
        if len(self.heads) != 1:
            raise ValueError(
                f"{self.name}: Wide & Deep has one output head; got heads={self.heads}."
            )
        check_layer_sizes(self.name, "deep_mlp", self.deep_mlp, ends_in_logit=True)
        check_wide_and_deep_inputs(self, self.wide_tables)

    @property
    def deep_in_features(self) -> int:
        return deep_input_width(self)

    @property
    def embedding_bytes_per_sample(self) -> int:
        """Embedding rows and wide weights gathered per sample at full capacity."""
        return super().embedding_bytes_per_sample + wide_bytes_per_sample(self, self.wide_tables)

    @property
    def lookups_per_sample(self) -> int:
        """Rows gathered per sample: every id in its embedding table, and in its wide table."""
        return super().lookups_per_sample + wide_lookups_per_sample(self, self.wide_tables)

    def build(self, rngs: nnx.Rngs) -> "WideDeep":
        return WideDeep(self, rngs=rngs)

    def dense_flops_per_sample(self) -> int:
        """The deep MLP (a multiply-add counts as two; the wide part is embedding-bag pooling,
        which is not counted, as for a DLRM's bags)."""
        return mlp_flops(self.deep_in_features, self.deep_mlp)

    def stages(self) -> tuple[Stage, ...]:
        head = self.heads[0]
        embedding = Stage(
            "embedding", ("batch",), lambda model, batch: model.embed(batch), "embedding"
        )
        if not self.wide_tables:
            return (
                embedding,
                Stage(
                    "deep_mlp",
                    ("batch", "embedding"),
                    lambda model, batch, embedded: {head: model.deep(batch, embedded)},
                    "fc",
                ),
            )
        return (
            embedding,
            Stage("wide", ("batch",), lambda model, batch: model.wide(batch), "embedding"),
            Stage(
                "deep_mlp",
                ("batch", "embedding", "wide"),
                lambda model, batch, embedded, wide: {head: model.deep(batch, embedded) + wide},
                "fc",
            ),
        )

    def architecture_summary(self) -> str:
        """One line, e.g. 'deep 1376-1024-512-256-1, wide over 27 features, 27 x 1,000,000 rows
        x 32 dim, 1 id/feature, 512 dense'."""
        deep = "-".join(str(width) for width in (self.deep_in_features, *self.deep_mlp))
        wide = f"wide over {len(self.features)} features" if self.wide_tables else "no wide part"
        ids = ids_per_feature(self)
        return (
            f"deep {deep}, {wide}, {tables_summary(self, self.wide_tables)}, {ids}, "
            f"{self.dense_features} dense"
        )


class WideDeep(nnx.Module):
    """The Wide & Deep network: sparse arch, wide arch, deep arch.

    Input  a `Features` batch: dense [B, F] float32 and the config's sparse features.
    Output {head: logits [B]}, the deep logit plus the wide one.

    Example:
        >>> model = configs.get("wnd-tiny").build(nnx.Rngs(0))
        >>> model(synthetic_features(model.config, 4, seed=0))["click"].shape
        (4,)
    """

    def __init__(self, config: WideDeepConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )
        names = [feature.name for feature in config.features]
        self.wide_arch = (
            WideArch(self.sparse_arch, dict(zip(names, config.wide_tables, strict=True)))
            if config.wide_tables
            else None
        )
        self.deep_arch = MLP(config.deep_in_features, config.deep_mlp, relu_last=False, rngs=rngs)

    def embed(self, batch: Features) -> jax.Array:
        """[B, sum_k D_k]: the features' pooled embeddings, concatenated in feature order."""
        pooled = self.sparse_arch(batch)
        return jnp.concatenate([pooled[feature.name] for feature in self.config.features], axis=1)

    def wide(self, batch: Features) -> jax.Array:
        """[B] w_wide^T x."""
        return self.wide_arch(self.sparse_arch, batch)[:, 0]

    def deep(self, batch: Features, embedded: jax.Array) -> jax.Array:
        """[B] the deep logit (with the bias b of eq. 3) over [dense, embeddings]."""
        return self.deep_arch(jnp.concatenate([batch.dense, embedded], axis=1))[:, 0]

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        logits = self.deep(batch, self.embed(batch))
        if self.wide_arch is not None:
            logits = logits + self.wide(batch)
        return {self.config.heads[0]: logits}
