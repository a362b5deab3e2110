"""DLRM (Naumov et al., 2019) as used by the RMC1-3 models of Gupta et al., HPCA 2020.

    dense [B, F] ──► dense arch (bottom MLP, ReLU) ──► [B, H] ─┐
                                                               ├─► interaction ─► over arch ─► logit
    sparse features ──► sparse arch (embedding bags) ──────────┘   (cat | dot)    (top MLP)     [B]
    (T bags of L ids)    [B, T, D]

Shapes: `B` batch, `F` dense features, `H` bottom-MLP output width, `T` sparse features (one bag
each), `L` lookups per bag (pooling factor), `D` embedding dim.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from recjax.inputs.features import FeatureConfig, Features, TableConfig
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.interactions import interaction_class
from recjax.layers.mlp import MLP, MLP_DTYPES, mlp_flops
from recjax.models.family import ModelConfig, Stage


@dataclasses.dataclass(frozen=True, kw_only=True)
class DLRMConfig(ModelConfig):
    """The architecture of one DLRM-style model (see `ModelConfig` for the shared fields).

    Attributes:
      bottom_mlp: output widths of the bottom-MLP layers, e.g. (128, 64) for "256-128-64".
      top_mlp: output widths of the top-MLP layers; the last is 1 (the logit).
      interaction: a name from `recjax.layers.interactions.INTERACTIONS`: "cat" (RMC1-3) or
        "dot" (the DLRM default); "cross", which takes options, is the dcnv2 family's
        (`recjax.models.dcnv2.DCNv2Config`).
    """

    bottom_mlp: tuple[int, ...]
    top_mlp: tuple[int, ...]
    interaction: str = "cat"

    MLP_DTYPES = MLP_DTYPES  # "bfloat16" kernels: `recjax.layers.mlp.MLP`

    def __post_init__(self):
        super().__post_init__()
        if self.dense_features <= 0:
            raise ValueError(
                f"{self.name}: a DLRM needs dense features; got dense_features="
                f"{self.dense_features}."
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
        dims = sorted({table.dim for table in self.tables})
        if len(dims) != 1:
            raise ValueError(f"{self.name}: all tables must share one dim; got dims {dims}.")
        sequences = [feature.name for feature in self.features if feature.pooling == "none"]
        if sequences:
            raise ValueError(
                f"{self.name}: every DLRM feature is a pooled bag; got sequence features "
                f"{sequences}."
            )
        interaction = interaction_class(self.interaction)
        missing = sorted(set(interaction.OPTIONS) - set(self.interaction_options()))
        if missing:
            raise ValueError(
                f"{self.name}: the {self.interaction!r} interaction takes the options {missing}, "
                f"which {type(self).__name__} does not set; the dcnv2 presets (DCNv2Config) set "
                "them for 'cross'."
            )
        interaction.check_widths(
            self.bottom_mlp[-1], len(self.features), dims[0], **self.interaction_options()
        )

    def interaction_options(self) -> dict[str, int]:
        """The interaction's keyword options beyond the widths (`Interaction.OPTIONS`): none for
        "cat" and "dot"; a subclass with a parameterized interaction supplies them."""
        return {}

    @property
    def num_features(self) -> int:
        return len(self.features)

    @property
    def embedding_dim(self) -> int:
        return self.tables[0].dim

    @property
    def top_mlp_in_features(self) -> int:
        return interaction_class(self.interaction).output_width(
            self.bottom_mlp[-1], self.num_features, self.embedding_dim, **self.interaction_options()
        )

    def build(self, rngs: nnx.Rngs) -> "DLRM":
        return DLRM(self, rngs=rngs)

    def dense_flops_per_sample(self) -> int:
        """Bottom MLP, interaction and top MLP."""
        interaction = interaction_class(self.interaction).flops_per_sample(
            self.bottom_mlp[-1], self.num_features, self.embedding_dim, **self.interaction_options()
        )
        return (
            mlp_flops(self.dense_features, self.bottom_mlp)
            + interaction
            + mlp_flops(self.top_mlp_in_features, self.top_mlp)
        )

    def stages(self) -> tuple[Stage, ...]:
        return (
            Stage("embedding", ("batch",), lambda model, batch: model.embed(batch), "embedding"),
            Stage(
                "bottom_mlp", ("batch",), lambda model, batch: model.dense_arch(batch.dense), "fc"
            ),
            Stage(
                "interaction",
                ("bottom_mlp", "embedding"),
                lambda model, dense, pooled: model.interaction(dense, pooled),
                "interaction",
            ),
            Stage(
                "top_mlp",
                ("interaction",),
                lambda model, interaction: {"click": model.over_arch(interaction)[:, 0]},
                "fc",
            ),
        )

    def architecture_summary(self) -> str:
        """One line in the paper's notation, e.g. 'bottom 256-128-64, top 2112-128-64-1, ...'."""
        bottom = "-".join(str(width) for width in (self.dense_features, *self.bottom_mlp))
        top = "-".join(str(width) for width in (self.top_mlp_in_features, *self.top_mlp))
        rows = ",".join(f"{r:,}" for r in sorted({table.num_rows for table in self.tables}))
        lookups = ",".join(str(c) for c in sorted({feature.capacity for feature in self.features}))
        return (
            f"bottom {bottom}, top {top}, {len(self.tables)} x {rows} rows x "
            f"{self.embedding_dim} dim, {lookups} lookups/table, {self.interaction} interaction"
        )


def one_bag_per_table(
    prefix: str, count: int, num_rows: int, dim: int, pooling_factor: int
) -> tuple[tuple[TableConfig, ...], tuple[FeatureConfig, ...]]:
    """`count` tables of one size (prefix_0, prefix_1, ...), each read by one feature (the table's
    name) that sums exactly `pooling_factor` rows per sample: the RMC models' sparse inputs."""
    tables = tuple(TableConfig(f"{prefix}_{index}", num_rows, dim) for index in range(count))
    features = tuple(FeatureConfig(table.name, table.name, pooling_factor) for table in tables)
    return tables, features


class DLRM(nnx.Module):
    """The DLRM network: dense arch, sparse arch, interaction, over arch.

    Input  a `Features` batch: dense [B, F] float32 and the config's sparse features.
    Output {"click": logits [B]}.

    Example:
        >>> model = configs.get("rmc2-tiny").build(nnx.Rngs(0))
        >>> model(synthetic_features(model.config, 4, seed=0))["click"].shape
        (4,)
    """

    def __init__(self, config: DLRMConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.dense_arch = MLP(
            config.dense_features,
            config.bottom_mlp,
            relu_last=True,
            rngs=rngs,
            param_dtype=config.mlp_dtype,
        )
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )
        self.interaction = interaction_class(config.interaction)(
            config.bottom_mlp[-1],
            config.num_features,
            config.embedding_dim,
            **config.interaction_options(),
            rngs=rngs,
        )
        self.over_arch = MLP(
            config.top_mlp_in_features,
            config.top_mlp,
            relu_last=False,
            rngs=rngs,
            param_dtype=config.mlp_dtype,
        )

    def embed(self, batch: Features) -> jax.Array:
        """[B, T, D] pooled embeddings, in feature order."""
        pooled = self.sparse_arch(batch)
        return jnp.stack([pooled[feature.name] for feature in self.config.features], axis=1)

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        dense = self.dense_arch(batch.dense)  # [B, H]
        interaction = self.interaction(dense, self.embed(batch))  # [B, W]
        return {"click": self.over_arch(interaction)[:, 0]}
