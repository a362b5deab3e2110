"""DLRM (Naumov et al., 2019) as used by the RMC1-3 models of Gupta et al., HPCA 2020.

    dense [B, F] ──► dense arch (bottom MLP, ReLU) ──► [B, H] ─┐
                                                               ├─► interaction ─► over arch
    sparse ids [B, T, L] ──► sparse arch (embedding bags) ─────┘   (cat | dot)    (top MLP)
                             [B, T, D]                                              │
                                                                 click probability [B] ◄─ sigmoid

Shapes: `B` batch, `F` dense features, `H` bottom-MLP output width, `T` tables, `L` lookups per
table, `D` embedding dim.
"""

import dataclasses

import jax
from flax import nnx

from recjax.layers.embedding_bag import EmbeddingBagCollection, EmbeddingTableConfig, check_lowering
from recjax.layers.interaction import (
    INTERACTIONS,
    interact,
    interaction_flops,
    interaction_width,
)
from recjax.layers.mlp import MLP, mlp_flops

FLOAT32_BYTES = 4


@dataclasses.dataclass(frozen=True)
class DLRMConfig:
    """The architecture of one DLRM-style model.

    Attributes:
      name: the preset's name, e.g. "rmc2".
      dense_features: F, the width of the dense input.
      bottom_mlp: output widths of the bottom-MLP layers, e.g. (128, 64) for "256-128-64".
      tables: one embedding table per sparse feature; all share one dim D.
      pooling_factor: L, rows looked up (and summed) per table and sample.
      top_mlp: output widths of the top-MLP layers; the last is 1 (the logit).
      interaction: "cat" (RMC1-3) or "dot" (the DLRM default).
      embedding_lowering: how the embedding bags are expressed for XLA; see
        `recjax.layers.embedding_bag.LOWERINGS`.
    """

    name: str
    dense_features: int
    bottom_mlp: tuple[int, ...]
    tables: tuple[EmbeddingTableConfig, ...]
    pooling_factor: int
    top_mlp: tuple[int, ...]
    interaction: str = "cat"
    embedding_lowering: str = "auto"

    def __post_init__(self):
        if self.dense_features <= 0 or self.pooling_factor <= 0:
            raise ValueError(
                f"{self.name}: dense_features and pooling_factor must be positive; got "
                f"{self.dense_features} and {self.pooling_factor}."
            )
        if not self.bottom_mlp or not self.top_mlp or min(self.bottom_mlp + self.top_mlp) <= 0:
            raise ValueError(
                f"{self.name}: MLP layer sizes must be non-empty and positive; got bottom_mlp="
                f"{self.bottom_mlp}, top_mlp={self.top_mlp}."
            )
        if self.top_mlp[-1] != 1:
            raise ValueError(
                f"{self.name}: the top MLP must end in one unit (the click logit); got "
                f"top_mlp={self.top_mlp}."
            )
        if not self.tables:
            raise ValueError(f"{self.name}: a DLRM needs at least one embedding table.")
        dims = sorted({table.dim for table in self.tables})
        if len(dims) != 1:
            raise ValueError(f"{self.name}: all tables must share one dim; got dims {dims}.")
        if self.interaction not in INTERACTIONS:
            raise ValueError(
                f"{self.name}: unknown interaction {self.interaction!r}; expected one of "
                f"{INTERACTIONS}."
            )
        if self.interaction == "dot" and self.bottom_mlp[-1] != dims[0]:
            raise ValueError(
                f"{self.name}: the dot interaction needs the bottom-MLP output width "
                f"({self.bottom_mlp[-1]}) to equal the embedding dim ({dims[0]})."
            )
        check_lowering(self.embedding_lowering)

    @property
    def num_tables(self) -> int:
        return len(self.tables)

    @property
    def embedding_dim(self) -> int:
        return self.tables[0].dim

    @property
    def top_mlp_in_features(self) -> int:
        return interaction_width(
            self.interaction, self.bottom_mlp[-1], self.num_tables, self.embedding_dim
        )

    @property
    def table_bytes(self) -> int:
        """Bytes of all embedding tables (float32)."""
        return sum(table.num_rows * table.dim for table in self.tables) * FLOAT32_BYTES

    @property
    def mlp_parameter_count(self) -> int:
        count = 0
        for in_features, sizes in (
            (self.dense_features, self.bottom_mlp),
            (self.top_mlp_in_features, self.top_mlp),
        ):
            widths = (in_features, *sizes)
            count += sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
        return count

    @property
    def parameter_bytes(self) -> int:
        """Bytes of all parameters: tables, weights and biases (float32)."""
        return self.table_bytes + self.mlp_parameter_count * FLOAT32_BYTES

    @property
    def fc_flops_per_sample(self) -> int:
        """FLOPs of the fully connected layers (bottom and top MLP) for one sample."""
        return mlp_flops(self.dense_features, self.bottom_mlp) + mlp_flops(
            self.top_mlp_in_features, self.top_mlp
        )

    @property
    def interaction_flops_per_sample(self) -> int:
        return interaction_flops(self.interaction, self.num_tables, self.embedding_dim)

    @property
    def embedding_bytes_per_sample(self) -> int:
        """Bytes of embedding rows gathered for one sample: T * L * D * 4."""
        return self.num_tables * self.pooling_factor * self.embedding_dim * FLOAT32_BYTES

    def cost(self) -> dict[str, int]:
        """The preset's size and per-sample cost, for reports."""
        return {
            "parameter_bytes": self.parameter_bytes,
            "table_bytes": self.table_bytes,
            "fc_flops_per_sample": self.fc_flops_per_sample,
            "interaction_flops_per_sample": self.interaction_flops_per_sample,
            "embedding_bytes_per_sample": self.embedding_bytes_per_sample,
        }

    def architecture_summary(self) -> str:
        """One line in the paper's notation, e.g. 'bottom 256-128-64, top 2112-128-64-1, ...'."""
        bottom = "-".join(str(width) for width in (self.dense_features, *self.bottom_mlp))
        top = "-".join(str(width) for width in (self.top_mlp_in_features, *self.top_mlp))
        rows = sorted({table.num_rows for table in self.tables})
        rows_text = ",".join(f"{r:,}" for r in rows)
        return (
            f"bottom {bottom}, top {top}, {self.num_tables} x {rows_text} rows x "
            f"{self.embedding_dim} dim, {self.pooling_factor} lookups/table, {self.interaction} "
            f"interaction"
        )


def uniform_tables(
    prefix: str, count: int, num_rows: int, dim: int
) -> tuple[EmbeddingTableConfig, ...]:
    """`count` tables of the same size, named prefix_0, prefix_1, ..."""
    return tuple(EmbeddingTableConfig(f"{prefix}_{index}", num_rows, dim) for index in range(count))


class DLRM(nnx.Module):
    """The DLRM network: dense arch, sparse arch, interaction, over arch.

    Inputs  dense [B, F] float32, sparse_ids [B, T, L] int32 (ids of table t in [0, rows_t)).
    Output  click probabilities [B] float32.

    Example:
        >>> model = DLRM(configs.get("rmc2-tiny"), rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((4, 256)), jnp.zeros((4, 32, 120), jnp.int32)).shape
        (4,)
    """

    def __init__(self, config: DLRMConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.dense_arch = MLP(config.dense_features, config.bottom_mlp, relu_last=True, rngs=rngs)
        self.sparse_arch = EmbeddingBagCollection(
            config.tables, lowering=config.embedding_lowering, rngs=rngs
        )
        self.over_arch = MLP(config.top_mlp_in_features, config.top_mlp, relu_last=False, rngs=rngs)

    def __call__(self, dense: jax.Array, sparse_ids: jax.Array) -> jax.Array:
        dense_out = self.dense_arch(dense)  # [B, H]
        pooled = self.sparse_arch(sparse_ids)  # [B, T, D]
        interaction = interact(self.config.interaction, dense_out, pooled)
        logits = self.over_arch(interaction)  # [B, 1]
        return jax.nn.sigmoid(logits[:, 0])

    def ids_in_range(self, sparse_ids: jax.Array) -> jax.Array:
        """A scalar bool: whether every id lies within its table."""
        return self.sparse_arch.ids_in_range(sparse_ids)


def abstract_model(config: DLRMConfig) -> DLRM:
    """The model with every parameter a `jax.ShapeDtypeStruct`: shapes without allocation."""
    return nnx.eval_shape(lambda: DLRM(config, rngs=nnx.Rngs(0)))
