"""NCF: Neural Matrix Factorization (NeuMF; He et al., "Neural Collaborative Filtering", WWW 2017).

    user_gmf, item_gmf ─► GMF embeddings p, q ─► p ⊙ q [B, D] ─────────────┐
                          [B, D] each                                      ├─► NeuMF layer ─► logit
    user_mlp, item_mlp ─► MLP embeddings p', q' ─► [p'; q'] ─► MLP tower ──┘   h^T [.; .]      [B]
                          [B, D'] each            [B, 2D']     (ReLU) [B, H]

From the paper: GMF (Section 3.2, eq. 9) takes the element-wise product of the user and item
embeddings; the MLP (Section 3.3, eq. 10) concatenates a second pair of user and item embeddings
and runs a tower of ReLU layers; NeuMF (Section 3.4, eq. 11-12) gives GMF and MLP separate
embeddings and fuses them in one linear layer without bias, y = sigmoid(h^T [phi_GMF; phi_MLP]).

Inputs: four sparse features of one id each, `user_gmf`, `item_gmf`, `user_mlp` and `item_mlp`,
each reading a table of its own (`FEATURES`). In the paper one user id indexes both user tables
(and one item id both item tables); DeepRecSys's sizes (Gupta et al., ISCA 2020) give the GMF and
MLP tables different row counts (140,000 and 28,000), so recjax takes the four ids as four
features: ids of the MLP tables lie in [0, 28,000). A caller with equal row counts passes the same
id twice. There are no dense features (`dense_features=0`; the batch's dense block is [B, 0]).

Where DeepRecSys differs: its NCF sums the GMF embeddings instead of multiplying them, and ends
the model in a 64-wide ReLU layer over [GMF; MLP] instead of the paper's single logit; recjax
follows the paper.

Shapes: `B` batch, `D` GMF embedding dim, `D'` MLP embedding dim, `H` the MLP tower's last width.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from recjax.inputs.features import FeatureConfig, Features, TableConfig
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.mlp import MLP, mlp_flops
from recjax.models.family import ModelConfig, Stage

USER_GMF, ITEM_GMF, USER_MLP, ITEM_MLP = "user_gmf", "item_gmf", "user_mlp", "item_mlp"
FEATURES = (USER_GMF, ITEM_GMF, USER_MLP, ITEM_MLP)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NCFConfig(ModelConfig):
    """The architecture of one NeuMF model (see `ModelConfig` for the shared fields).

    The features are `FEATURES` (in any order), each one id per sample (capacity 1, fixed length,
    unweighted, pooling "sum" or "mean", which agree for one id) in a table of its own; the two GMF
    tables share a dim.

    Attributes:
      mlp_tower: output widths of the MLP tower's layers, ReLU after each (the last too); its input
        width is the two MLP embeddings' dims together, e.g. (256, 256, 128, 64) for
        "128-256-256-128-64" with 64-dim MLP embeddings.
    """

    mlp_tower: tuple[int, ...]

    def __post_init__(self):
        super().__post_init__()
        if self.dense_features != 0:
            raise ValueError(
                f"{self.name}: NCF takes no dense features; dense_features must be 0, got "
                f"{self.dense_features}."
            )
        if len(self.heads) != 1:
            raise ValueError(f"{self.name}: NCF has one output head; got heads={self.heads}.")
        if not self.mlp_tower or min(self.mlp_tower) <= 0:
            raise ValueError(
                f"{self.name}: mlp_tower must be a non-empty tuple of positive layer widths; "
                f"got {self.mlp_tower}."
            )
        names = [feature.name for feature in self.features]
        if sorted(names) != sorted(FEATURES):
            raise ValueError(
                f"{self.name}: NCF's sparse features must be exactly {list(FEATURES)} (one id "
                f"each); got {names}."
            )
        for feature in self.features:
            if not (
                feature.capacity == 1
                and feature.fixed_length
                and not feature.weighted
                and feature.pooling in ("sum", "mean")
            ):
                raise ValueError(
                    f"{self.name}: NCF feature {feature.name!r} must hold one id per sample "
                    f"(capacity=1, fixed_length=True, weighted=False, pooling 'sum' or 'mean'); "
                    f"got {feature}."
                )
        tables = [feature.table for feature in self.features]
        if len(set(tables)) != len(tables):
            raise ValueError(
                f"{self.name}: each NCF feature reads a table of its own (NeuMF learns separate "
                f"GMF and MLP embeddings, He et al. Section 3.4); got tables {tables} for "
                f"features {names}."
            )
        if self.dim_of(USER_GMF) != self.dim_of(ITEM_GMF):
            raise ValueError(
                f"{self.name}: the GMF user and item embeddings are multiplied element-wise, so "
                f"their tables must share a dim; got {self.dim_of(USER_GMF)} and "
                f"{self.dim_of(ITEM_GMF)}."
            )

    def feature(self, name: str) -> FeatureConfig:
        return next(feature for feature in self.features if feature.name == name)

    def dim_of(self, name: str) -> int:
        """The embedding dim of feature `name`."""
        return self.table(self.feature(name).table).dim

    @property
    def gmf_dim(self) -> int:
        return self.dim_of(USER_GMF)

    @property
    def mlp_in_features(self) -> int:
        """2D' (or D'_user + D'_item): the concatenated MLP embeddings."""
        return self.dim_of(USER_MLP) + self.dim_of(ITEM_MLP)

    @property
    def neumf_in_features(self) -> int:
        """D + H: the GMF vector and the MLP tower's output, concatenated."""
        return self.gmf_dim + self.mlp_tower[-1]

    def build(self, rngs: nnx.Rngs) -> "NCF":
        return NCF(self, rngs=rngs)

    def dense_flops_per_sample(self) -> int:
        """The GMF product (D multiplies), the MLP tower and the NeuMF layer (a multiply-add
        counts as two)."""
        return (
            self.gmf_dim
            + mlp_flops(self.mlp_in_features, self.mlp_tower)
            + mlp_flops(self.neumf_in_features, (1,))
        )

    def stages(self) -> tuple[Stage, ...]:
        head = self.heads[0]
        return (
            Stage(
                "embedding", ("batch",), lambda model, batch: model.sparse_arch(batch), "embedding"
            ),
            Stage(
                "gmf", ("embedding",), lambda model, embedded: model.gmf(embedded), "interaction"
            ),
            Stage("mlp_tower", ("embedding",), lambda model, embedded: model.mlp(embedded), "fc"),
            Stage(
                "neumf_layer",
                ("gmf", "mlp_tower"),
                lambda model, gmf, mlp: {head: model.neumf(gmf, mlp)},
                "fc",
            ),
        )

    def architecture_summary(self) -> str:
        """One line, e.g. 'GMF 2 x 140,000 x 64 (product), MLP 2 x 28,000 x 64, tower
        128-256-256-128-64, NeuMF 128-1'."""
        tower = "-".join(str(width) for width in (self.mlp_in_features, *self.mlp_tower))
        return (
            f"GMF {self._pair_summary(USER_GMF, ITEM_GMF)} (product), MLP "
            f"{self._pair_summary(USER_MLP, ITEM_MLP)}, tower {tower}, NeuMF "
            f"{self.neumf_in_features}-1"
        )

    def _pair_summary(self, user: str, item: str) -> str:
        """'2 x rows x dim' for equal user and item tables, else both."""
        tables = [self.table(self.feature(name).table) for name in (user, item)]
        sizes = [f"{table.num_rows:,} x {table.dim}" for table in tables]
        return f"2 x {sizes[0]}" if sizes[0] == sizes[1] else " + ".join(sizes)


def ncf_tables(
    gmf_rows: int, mlp_rows: int, gmf_dim: int, mlp_dim: int
) -> tuple[tuple[TableConfig, ...], tuple[FeatureConfig, ...]]:
    """NeuMF's four tables (user and item, GMF and MLP), each read by one feature of `FEATURES`:
    `gmf_rows` rows in each GMF table, `mlp_rows` in each MLP table."""
    rows = {USER_GMF: gmf_rows, ITEM_GMF: gmf_rows, USER_MLP: mlp_rows, ITEM_MLP: mlp_rows}
    dims = {USER_GMF: gmf_dim, ITEM_GMF: gmf_dim, USER_MLP: mlp_dim, ITEM_MLP: mlp_dim}
    tables = tuple(TableConfig(f"{name}_table", rows[name], dims[name]) for name in FEATURES)
    features = tuple(
        FeatureConfig(name, table.name, capacity=1)
        for name, table in zip(FEATURES, tables, strict=True)
    )
    return tables, features


class NCF(nnx.Module):
    """The NeuMF network: sparse arch (four embedding tables), GMF, MLP tower, NeuMF layer.

    Input  a `Features` batch with dense [B, 0] and the four one-id features of `FEATURES`.
    Output {head: logits [B]}.

    Example:
        >>> model = configs.get("ncf-tiny").build(nnx.Rngs(0))
        >>> model(synthetic_features(model.config, 4, seed=0))["click"].shape
        (4,)
    """

    def __init__(self, config: NCFConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )
        self.mlp_tower = MLP(config.mlp_in_features, config.mlp_tower, relu_last=True, rngs=rngs)
        # eq. 12: y = sigmoid(h^T [phi_GMF; phi_MLP]), no bias.
        self.neumf_layer = nnx.Linear(
            config.neumf_in_features,
            1,
            use_bias=False,
            kernel_init=nnx.initializers.glorot_normal(),
            rngs=rngs,
        )

    def gmf(self, embedded: dict[str, jax.Array]) -> jax.Array:
        """[B, D] phi_GMF = p_u ⊙ q_i (eq. 9)."""
        return embedded[USER_GMF] * embedded[ITEM_GMF]

    def mlp(self, embedded: dict[str, jax.Array]) -> jax.Array:
        """[B, H] phi_MLP: the tower over [p'_u; q'_i] (eq. 10)."""
        return self.mlp_tower(jnp.concatenate([embedded[USER_MLP], embedded[ITEM_MLP]], axis=1))

    def neumf(self, gmf: jax.Array, mlp: jax.Array) -> jax.Array:
        """[B] logits h^T [phi_GMF; phi_MLP] (eq. 12 before the sigmoid)."""
        return self.neumf_layer(jnp.concatenate([gmf, mlp], axis=1))[:, 0]

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        embedded = self.sparse_arch(batch)  # {feature: [B, D]}
        return {self.config.heads[0]: self.neumf(self.gmf(embedded), self.mlp(embedded))}
