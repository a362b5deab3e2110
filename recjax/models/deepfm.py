"""DeepFM (Guo et al., IJCAI 2017): a factorization machine and a deep network sharing one
embedding of every field, their logits summed.

    fields e_1 .. e_N  [B, N, D]  (dense feature j: x_j v_j; sparse feature k: its pooled row)
      ├─► first order   b + sum_j w_j x_j + sum_k w_k[id]              ─┐
      ├─► FM            0.5 sum_d [(sum_f e_fd)^2 - sum_f e_fd^2]       ├─► sum ─► logit [B]
      └─► deep MLP      [e_1, ..., e_N] -> 400-400-400-1 (ReLU between) ─┘

The FM's second-order term is sum_{i<j} <e_i, e_j>, computed in O(N D) by the identity above
(Rendle, 2010). The first-order term is the FM's linear part: one weight per id (a table of dim 1
beside each embedding table), one weight per dense feature, and a bias.

Dense features. The paper's FM runs over every feature, a continuous one entering "as the value
itself": its field embedding is its own vector scaled by its value, e_j = x_j v_j, and it has a
first-order weight w_j. That is what the Criteo implementations of the paper's setting do (the
authors' era TensorFlow DeepFM of ChenglongChen, PaddleRec's DeepFM, FuxiCTR's numeric fields), and
recjax's default (`dense_as_fields=True`): N = F + T fields, deep input N x D. deepctr(-torch) does
otherwise: its FM runs over the sparse embeddings only, and the raw dense values go to the linear
term and are concatenated to the deep input; `dense_as_fields=False` runs that (N = T, deep input
F + T x D). Both keep the dense first-order term.

Shapes: `B` batch, `F` dense features, `T` sparse features, `N` fields, `D` embedding dim.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.inputs.features import FeatureConfig, Features, TableConfig
from recjax.layers.embedding_collection import EmbeddingCollection, PooledCall
from recjax.layers.mlp import MLP, mlp_flops
from recjax.models.family import ModelConfig, Stage

# The one-weight-per-id table beside embedding table "C1" is "C1_first_order".
FIRST_ORDER_SUFFIX = "_first_order"


def first_order_table(table: TableConfig) -> TableConfig:
    """The first-order (dim 1) table that goes with an embedding table."""
    return TableConfig(table.name + FIRST_ORDER_SUFFIX, table.num_rows, 1, table.dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeepFMConfig(ModelConfig):
    """The architecture of one DeepFM (see `ModelConfig` for the shared fields).

    `tables` holds the embedding tables (one dim D for all) read by the features, and beside each
    one its first-order table (`first_order_table`: the same rows, dim 1), so the table bytes,
    the memory check, `configs.tiny` and the model's `sparse_arch` hold both.
    `with_first_order_tables` adds them.

    Attributes:
      deep_mlp: output widths of the deep component's layers; the last is 1 (its logit).
      dense_as_fields: each dense feature is a field of the FM and the deep input with its own
        vector scaled by its value (the paper); False: the FM runs over the sparse fields only and
        the raw dense values are concatenated to the deep input (deepctr).
    """

    deep_mlp: tuple[int, ...]
    dense_as_fields: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not self.deep_mlp or min(self.deep_mlp) <= 0:
            raise ValueError(
                f"{self.name}: deep_mlp must be non-empty and positive; got {self.deep_mlp}."
            )
        if self.deep_mlp[-1] != 1:
            raise ValueError(
                f"{self.name}: the deep MLP must end in one unit (its logit); got "
                f"deep_mlp={self.deep_mlp}."
            )
        sequences = [feature.name for feature in self.features if feature.pooling == "none"]
        if sequences:
            raise ValueError(
                f"{self.name}: every DeepFM field is pooled; got sequence features {sequences}."
            )
        dims = sorted({table.dim for table in self.embedding_tables})
        if len(dims) != 1:
            raise ValueError(
                f"{self.name}: all embedding tables must share one dim (the FM takes inner "
                f"products of fields); got dims {dims}."
            )
        expected = {table.name: first_order_table(table) for table in self.embedding_tables}
        by_name = {table.name: table for table in self.tables}
        for name, table in expected.items():
            if by_name.get(table.name) != table:
                raise ValueError(
                    f"{self.name}: the embedding table {name!r} needs its first-order table "
                    f"{table}; got {by_name.get(table.name)}. DeepFMConfig."
                    "with_first_order_tables adds them."
                )
        unused = sorted(set(by_name) - set(expected) - {t.name for t in expected.values()})
        if unused:
            raise ValueError(
                f"{self.name}: tables {unused} are neither read by a feature nor the first-order "
                "table of one."
            )

    @staticmethod
    def with_first_order_tables(tables: tuple[TableConfig, ...]) -> tuple[TableConfig, ...]:
        """The embedding tables, each followed by its first-order table."""
        return tuple(
            table for embedding in tables for table in (embedding, first_order_table(embedding))
        )

    @property
    def embedding_tables(self) -> tuple[TableConfig, ...]:
        """The tables the features read (dim D), in `tables` order."""
        read = {feature.table for feature in self.features}
        return tuple(table for table in self.tables if table.name in read)

    @property
    def first_order_tables(self) -> tuple[TableConfig, ...]:
        return tuple(self.table(table.name + FIRST_ORDER_SUFFIX) for table in self.embedding_tables)

    @property
    def embedding_dim(self) -> int:
        return self.embedding_tables[0].dim

    @property
    def num_fields(self) -> int:
        """N: the sparse features, plus the dense ones when they are fields."""
        return len(self.features) + (self.dense_features if self.dense_as_fields else 0)

    @property
    def deep_in_features(self) -> int:
        sparse = len(self.features) * self.embedding_dim
        if self.dense_as_fields:
            return self.dense_features * self.embedding_dim + sparse
        return self.dense_features + sparse

    @property
    def embedding_bytes_per_sample(self) -> int:
        """The embedding rows and the first-order weights gathered per sample."""
        return sum(
            feature.capacity
            * (
                self.table(feature.table).row_bytes
                + first_order_table(self.table(feature.table)).row_bytes
            )
            for feature in self.features
        )

    @property
    def lookups_per_sample(self) -> int:
        """Each id reads two rows: its embedding and its first-order weight."""
        return 2 * sum(feature.capacity for feature in self.features)

    def build(self, rngs: nnx.Rngs) -> "DeepFM":
        return DeepFM(self, rngs=rngs)

    def dense_flops_per_sample(self) -> int:
        """First order 2 F + T + 1; dense fields F D (if fields); FM 3 N D + 3 D (the sum and the
        sum of squares over N fields, then D squares, differences and a sum); the deep MLP; and 2
        to add the three logits."""
        fields, dim, dense = self.num_fields, self.embedding_dim, self.dense_features
        first_order = 2 * dense + len(self.features) + 1
        dense_fields = dense * dim if self.dense_as_fields else 0
        fm = 3 * fields * dim + 3 * dim
        return first_order + dense_fields + fm + mlp_flops(self.deep_in_features, self.deep_mlp) + 2

    def stages(self) -> tuple[Stage, ...]:
        return (
            Stage("embedding", ("batch",), lambda model, batch: model.embed(batch), "embedding"),
            Stage(
                "first_order",
                ("batch",),
                lambda model, batch: model.first_order(batch),
                "embedding",
            ),
            Stage(
                "fm",
                ("batch", "embedding"),
                lambda model, batch, embedded: model.fm(model.fields(batch.dense, embedded)),
                "interaction",
            ),
            Stage(
                "deep_mlp",
                ("batch", "embedding"),
                lambda model, batch, embedded: model.deep_logit(batch.dense, embedded),
                "fc",
            ),
            Stage(
                "sum",
                ("first_order", "fm", "deep_mlp"),
                lambda model, first_order, fm, deep: {"click": first_order + fm + deep},
                "other",
            ),
        )

    def architecture_summary(self) -> str:
        """e.g. 'FM + deep 624-400-400-400-1 over 39 fields x 16 dim (13 dense as fields), 26
        tables x 3 to 10,131,227 rows, 1 id/feature, first-order weights'."""
        deep = "-".join(str(width) for width in (self.deep_in_features, *self.deep_mlp))
        rows = [table.num_rows for table in self.embedding_tables]
        lookups = sorted({feature.capacity for feature in self.features})
        ids = f"{lookups[0]}" if len(lookups) == 1 else f"{lookups[0]} to {lookups[-1]}"
        dense = "as fields" if self.dense_as_fields else "into the deep input"
        return (
            f"FM + deep {deep} over {self.num_fields} fields x {self.embedding_dim} dim "
            f"({self.dense_features} dense {dense}), {len(rows)} tables x {min(rows):,} to "
            f"{max(rows):,} rows, {ids} id/feature, first-order weights"
        )


def one_hot_fields(
    vocabulary: tuple[int, ...], dim: int
) -> tuple[tuple[TableConfig, ...], tuple[FeatureConfig, ...]]:
    """Criteo's categorical fields C1, C2, ...: one id each, looked up in a table of its own
    (`vocabulary[k]` rows), each table with its first-order table beside it."""
    tables = tuple(TableConfig(f"C{index + 1}", rows, dim) for index, rows in enumerate(vocabulary))
    features = tuple(FeatureConfig(table.name, table.name, capacity=1) for table in tables)
    return DeepFMConfig.with_first_order_tables(tables), features


def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def first_order_calls(
    collection: EmbeddingCollection, first_order_tables: dict[str, str]
) -> tuple[PooledCall, ...]:
    """The collection's pooled calls, pointed at each feature's first-order table: the same id
    columns, capacity and pooling, read in the dim-1 tables' group (split by group if need be).

    Args:
      collection: holds both the features' tables and the first-order tables.
      first_order_tables: {feature name: the name of its first-order table}.
    """
    calls = []
    for call in collection.pooled_calls:
        tables = [first_order_tables[name] for name in call.features]
        for group in dict.fromkeys(collection.table_group[table] for table in tables):
            members = [
                (name, column, table)
                for name, column, table in zip(call.features, call.columns, tables, strict=True)
                if collection.table_group[table] == group
            ]
            calls.append(
                dataclasses.replace(
                    call,
                    group=group,
                    features=tuple(name for name, _, _ in members),
                    columns=tuple(column for _, column, _ in members),
                    row_offsets=tuple(collection.table_offset[table] for _, _, table in members),
                )
            )
    return tuple(calls)


class DeepFM(nnx.Module):
    """The DeepFM network: field embeddings shared by the FM and the deep component.

    Input  a `Features` batch: dense [B, F] float32 and the config's sparse features.
    Output {"click": logits [B]}.

    Parameters: `sparse_arch` (every table: the embedding tables, [rows, D] each, in one stacked
    group, and the first-order tables, [rows, 1], in another), `dense_weight` [F] and `bias` []
    (first order), `dense_embedding` [F, D] (the dense fields' vectors; None unless
    `dense_as_fields`), `deep`. Each feature's ids are read twice: by `sparse_arch`'s own calls
    (the embeddings) and by the same calls pointed at the first-order tables
    (`first_order_calls`), so the ids are never copied. Tables initialize as the DLRM's,
    uniform(+-1/sqrt(rows)); the dense weights and vectors as torch's nn.Linear does,
    uniform(+-1/sqrt(fan in)); the bias at zero; the deep MLP Glorot.

    Example:
        >>> model = configs.get("deepfm-tiny").build(nnx.Rngs(0))
        >>> model(synthetic_features(model.config, 4, seed=0))["click"].shape
        (4,)
    """

    def __init__(self, config: DeepFMConfig, *, rngs: nnx.Rngs):
        self.config = config
        dense, dim = config.dense_features, config.embedding_dim
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )
        self.first_order_calls = first_order_calls(
            self.sparse_arch,
            {feature.name: feature.table + FIRST_ORDER_SUFFIX for feature in config.features},
        )
        self.dense_weight = nnx.Param(_uniform(rngs.params(), (dense,), 1 / np.sqrt(max(dense, 1))))
        self.bias = nnx.Param(jnp.zeros((), jnp.float32))
        self.dense_embedding = (
            nnx.Param(_uniform(rngs.params(), (dense, dim), 1 / np.sqrt(dim)))
            if config.dense_as_fields
            else None
        )
        self.deep = MLP(config.deep_in_features, config.deep_mlp, relu_last=False, rngs=rngs)

    def embed(self, batch: Features) -> jax.Array:
        """[B, T, D] pooled embeddings of the sparse features, in feature order."""
        pooled = self.sparse_arch(batch)
        return jnp.stack([pooled[feature.name] for feature in self.config.features], axis=1)

    def first_order(self, batch: Features) -> jax.Array:
        """[B]: b + sum_j w_j x_j + sum_k (sum of the first-order weights of feature k's ids)."""
        sparse = sum(
            self.sparse_arch.pool_call(call, batch).sum(axis=(1, 2))  # [B, T, 1] -> [B]
            for call in self.first_order_calls
        )
        return self.bias[...] + batch.dense @ self.dense_weight[...] + sparse

    def fields(self, dense: jax.Array, embedded: jax.Array) -> jax.Array:
        """[B, N, D]: the dense fields x_j v_j (if they are fields), then the sparse ones."""
        if not self.config.dense_as_fields:
            return embedded
        dense_fields = dense[:, :, None] * self.dense_embedding[...][None, :, :]  # [B, F, D]
        return jnp.concatenate([dense_fields, embedded], axis=1)

    def fm(self, fields: jax.Array) -> jax.Array:
        """[B, N, D] -> [B]: sum_{i<j} <e_i, e_j> = 0.5 sum_d [(sum_f e_fd)^2 - sum_f e_fd^2]."""
        total = fields.sum(axis=1)  # [B, D]
        squares = (fields * fields).sum(axis=1)  # [B, D]
        return 0.5 * (total * total - squares).sum(axis=1)

    def deep_logit(self, dense: jax.Array, embedded: jax.Array) -> jax.Array:
        """[B]: the deep MLP over the flattened fields (and the raw dense values if they are not
        fields)."""
        batch = embedded.shape[0]
        if self.config.dense_as_fields:
            deep_input = self.fields(dense, embedded).reshape(batch, -1)
        else:
            deep_input = jnp.concatenate([dense, embedded.reshape(batch, -1)], axis=1)
        return self.deep(deep_input)[:, 0]

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        embedded = self.embed(batch)  # [B, T, D]
        fm = self.fm(self.fields(batch.dense, embedded))
        return {"click": self.first_order(batch) + fm + self.deep_logit(batch.dense, embedded)}
