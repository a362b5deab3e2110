"""DCN-V2 (Wang et al., WWW 2021) as MLPerf's DLRM-v2 runs it: a DLRM whose interaction is a
low-rank cross network.

    dense [B, F] ──► dense arch (bottom MLP, ReLU) ──► [B, H] ─┐
                                                               ├─► cross network ─► over arch
    sparse features ──► sparse arch (embedding bags) ──────────┘   L low-rank        (top MLP)
    (T multi-hot bags)   [B, T, D]                                 layers, [B, N]    logit [B]

    x_{l+1} = x_0 * (U_l (V_l x_l) + b_l) + x_l,  N = H + T * D,  U_l [N, r], V_l [r, N]

This is TorchRec's `DLRM_DCN` (a subclass of its `DLRM` with `InteractionDCNArch` and
`LowRankCrossNet`), which MLPerf's DLRM-v2 reference trains on Criteo 1TB with synthetic multi-hot
bags. recjax follows it the same way: `DCNv2Config` is a `DLRMConfig` whose interaction is "cross"
(`recjax.layers.interactions.cross`) with two more fields, and the model is the DLRM module
(dense arch, sparse arch, interaction, over arch) with the same stages. It is a family of its own
("dcnv2" in the registry) because its weights have their own layouts: TorchRec's state dict
(`recjax.interop.torchrec_dlrm_dcn`) and its own PyTorch twin (`recjax.interop.torch_dcnv2`),
where the facebookresearch/dlrm layout of the "dlrm" family has no cross network.

Shapes: `B` batch, `F` dense features, `H` bottom-MLP output width, `T` sparse features, `D`
embedding dim, `N` cross-network width, `r` its rank, `L` its layers.
"""

import dataclasses

from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.models.dlrm import DLRMConfig

CROSS = "cross"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DCNv2Config(DLRMConfig):
    """A DLRM with the low-rank cross network as its interaction (see `DLRMConfig` for the rest).

    Attributes:
      interaction: always "cross".
      cross_layers: L, the cross layers (3 in DLRM-v2).
      cross_rank: r, the rank of each layer's U_l V_l (512 in DLRM-v2).
    """

    interaction: str = CROSS
    cross_layers: int = 3
    cross_rank: int = 512

    def __post_init__(self):
        if self.interaction != CROSS:
            raise ValueError(
                f"{self.name}: a DCN-V2 model's interaction is {CROSS!r}; got "
                f"interaction={self.interaction!r} (a DLRM preset runs 'cat' or 'dot')."
            )
        super().__post_init__()

    def interaction_options(self) -> dict[str, int]:
        return {"num_layers": self.cross_layers, "rank": self.cross_rank}

    def architecture_summary(self) -> str:
        """e.g. 'bottom 13-512-256-128, cross network (layers=3, rank=512) over 3456, top
        3456-1024-1024-512-256-1, 26 tables x 3 to 40,000,000 rows x 128 dim, 1 to 100
        lookups/table (214 per sample)'."""
        bottom = "-".join(str(width) for width in (self.dense_features, *self.bottom_mlp))
        top = "-".join(str(width) for width in (self.top_mlp_in_features, *self.top_mlp))
        rows = [table.num_rows for table in self.tables]
        lookups = [feature.capacity for feature in self.features]
        return (
            f"bottom {bottom}, cross network (layers={self.cross_layers}, "
            f"rank={self.cross_rank}) over "
            f"{self.top_mlp_in_features}, top {top}, {len(self.tables)} tables x {min(rows):,} "
            f"to {max(rows):,} rows x {self.embedding_dim} dim, {min(lookups)} to {max(lookups)} "
            f"lookups/table ({sum(lookups)} per sample)"
        )


def multi_hot_bags(
    vocabulary: tuple[int, ...], pooling: tuple[int, ...], dim: int, max_rows: int | None = None
) -> tuple[tuple[TableConfig, ...], tuple[FeatureConfig, ...]]:
    """One table per Criteo categorical feature, named as TorchRec's DLRM example names them.

    Feature `cat_k` is a fixed-length bag of `pooling[k]` ids (MLPerf DLRM-v2's synthetic
    multi-hot), summed, over the table `t_cat_k` of `vocabulary[k]` rows (at most `max_rows`).
    """
    if len(vocabulary) != len(pooling):
        raise ValueError(
            f"Need one pooling size per table; got {len(vocabulary)} tables and "
            f"{len(pooling)} pooling sizes."
        )
    tables = tuple(
        TableConfig(f"t_cat_{index}", min(rows, max_rows or rows), dim)
        for index, rows in enumerate(vocabulary)
    )
    features = tuple(
        FeatureConfig(f"cat_{index}", table.name, capacity)
        for index, (table, capacity) in enumerate(zip(tables, pooling, strict=True))
    )
    return tables, features
