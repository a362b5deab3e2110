"""What DIN and DIEN share: a candidate item, a behaviour sequence of items in the same tables,
other pooled features, and an MLP over their concatenation ending in one logit.

    user profile, context, ... ──► pooled embeddings [B, W] ───────────────────┐
    candidate item + category ──► candidate c [B, E] (also among the pooled) ──┤
    behaviours (S items, length) ► behaviours [B, S, E] ─► interest [B, I] ────┼─► MLP ─► logit [B]
    dense features [B, F] ─────────────────────────────────────────────────────┘

Shapes: `B` batch, `S` sequence length (the capacity of the behaviour features), `D` embedding dim,
`E` width of an item (the dims of its features, item id and category id, concatenated), `W` width
of the pooled (non-sequence) features concatenated, `I` width of the interest (E for DIN, the GRU's
hidden size for DIEN), `F` dense features.

The features of a behaviour are named in `behaviour_features` (sequence features: pooling "none",
not fixed-length; the second and later take their lengths from the first), and the candidate's in
`candidate_features`, pairwise with the behaviour's and of the same dims (presets give them the
same tables). Every feature that is not a behaviour is pooled and enters the MLP in the config's
feature order (the candidate's included), then the interest, then the dense features.
"""

import dataclasses

import jax
import jax.numpy as jnp

from recjax.inputs.features import FeatureConfig, Features, TableConfig
from recjax.layers.activations import DICE_EPSILON, check_activation, feed_forward_flops
from recjax.models.family import ModelConfig

# The stage "embedding" of both families returns this dict (see `embed`).
EMBEDDED_KEYS = ("pooled", "candidate", "behaviours", "lengths", "dense")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BehaviourSequenceConfig(ModelConfig):
    """Fields shared by DIN and DIEN (see `ModelConfig` for the contract's fields).

    Attributes:
      sequence_length: S, the most behaviours per sample; it sets the capacity of every behaviour
        feature (so `--override sequence_length=50` changes S).
      candidate_features: the candidate item's features (capacity 1), e.g. item id, category id.
      behaviour_features: the behaviour sequence's features, pairwise with the candidate's.
      mlp: output widths of the MLP after the concatenation; the last is 1 (the logit).
      mlp_activation: "dice" (the papers' and their code's), "prelu", "relu" or "sigmoid".
      dice_epsilon: epsilon of every Dice (1e-8 in the DIN paper).
      dice_affine: Dice normalizes with a learned scale and shift too (deepctr-torch's Dice, a
        `BatchNorm1d`); the paper's has none.
    """

    sequence_length: int = 100
    candidate_features: tuple[str, ...] = ("candidate_item", "candidate_category")
    behaviour_features: tuple[str, ...] = ("behaviour_item", "behaviour_category")
    mlp: tuple[int, ...] = (200, 80, 1)
    mlp_activation: str = "dice"
    dice_epsilon: float = DICE_EPSILON
    dice_affine: bool = False

    def __post_init__(self):
        if self.sequence_length <= 0:
            raise ValueError(
                f"{self.name}: sequence_length must be positive; got {self.sequence_length}."
            )
        # The behaviour features follow sequence_length.
        object.__setattr__(
            self,
            "features",
            tuple(
                dataclasses.replace(feature, capacity=self.sequence_length)
                if feature.name in self.behaviour_features
                else feature
                for feature in self.features
            ),
        )
        super().__post_init__()
        self._check_sequence_features()
        if not self.mlp or min(self.mlp) <= 0 or self.mlp[-1] != 1:
            raise ValueError(
                f"{self.name}: mlp must be positive widths ending in 1 (the logit); got "
                f"mlp={self.mlp}."
            )
        check_activation(self.name, "mlp_activation", self.mlp_activation)
        if self.dice_epsilon <= 0:
            raise ValueError(
                f"{self.name}: dice_epsilon must be positive; got {self.dice_epsilon}."
            )

    def _feature(self, name: str, role: str) -> FeatureConfig:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise ValueError(
            f"{self.name}: the {role} feature {name!r} is not among the features "
            f"{[feature.name for feature in self.features]}."
        )

    def _check_sequence_features(self) -> None:
        if not self.behaviour_features or len(self.candidate_features) != len(
            self.behaviour_features
        ):
            raise ValueError(
                f"{self.name}: candidate_features and behaviour_features must name the same "
                f"number (at least one) of features, pairwise; got {self.candidate_features} and "
                f"{self.behaviour_features}."
            )
        first = self.behaviour_features[0]
        for candidate_name, behaviour_name in zip(
            self.candidate_features, self.behaviour_features, strict=True
        ):
            candidate = self._feature(candidate_name, "candidate")
            behaviour = self._feature(behaviour_name, "behaviour")
            if candidate.capacity != 1 or candidate.pooling == "none" or not candidate.fixed_length:
                raise ValueError(
                    f"{self.name}: the candidate feature {candidate.name!r} must hold exactly one "
                    f"id (capacity=1, pooled, fixed_length=True); got capacity="
                    f"{candidate.capacity}, pooling={candidate.pooling!r}, fixed_length="
                    f"{candidate.fixed_length}."
                )
            lengths_from = None if behaviour.name == first else first
            if (
                behaviour.pooling != "none"
                or behaviour.fixed_length
                or behaviour.lengths_from != lengths_from
            ):
                raise ValueError(
                    f"{self.name}: the behaviour feature {behaviour.name!r} must be a sequence "
                    f"(pooling='none', fixed_length=False, lengths_from={lengths_from!r}); got "
                    f"pooling={behaviour.pooling!r}, fixed_length={behaviour.fixed_length}, "
                    f"lengths_from={behaviour.lengths_from!r}."
                )
            candidate_dim = self.table(candidate.table).dim
            behaviour_dim = self.table(behaviour.table).dim
            if candidate_dim != behaviour_dim:
                raise ValueError(
                    f"{self.name}: the candidate feature {candidate.name!r} (dim {candidate_dim}) "
                    f"and the behaviour feature {behaviour.name!r} (dim {behaviour_dim}) must "
                    "have the same dim."
                )
        others = [
            feature.name
            for feature in self.features
            if feature.pooling == "none" and feature.name not in self.behaviour_features
        ]
        if others:
            raise ValueError(
                f"{self.name}: the only sequence features may be the behaviour features "
                f"{self.behaviour_features}; got also {others}."
            )

    # --- widths ---------------------------------------------------------------------------------

    @property
    def pooled_features(self) -> tuple[FeatureConfig, ...]:
        """The features that are not behaviours, in the config's order (the MLP's order)."""
        return tuple(
            feature for feature in self.features if feature.name not in self.behaviour_features
        )

    @property
    def pooled_width(self) -> int:
        """W: the pooled features' dims, summed."""
        return sum(self.table(feature.table).dim for feature in self.pooled_features)

    @property
    def item_width(self) -> int:
        """E: the width of one behaviour (and of the candidate)."""
        return sum(
            self.table(self._feature(name, "behaviour").table).dim
            for name in self.behaviour_features
        )

    @property
    def interest_width(self) -> int:
        """I: the width of the interest that enters the MLP (the family's)."""
        raise NotImplementedError

    @property
    def mlp_in_features(self) -> int:
        return self.pooled_width + self.interest_width + self.dense_features

    def mlp_flops(self) -> int:
        return feed_forward_flops(self.mlp_in_features, self.mlp)

    def tables_summary(self) -> str:
        rows = "/".join(f"{table.num_rows:,}" for table in self.tables)
        dims = ",".join(str(d) for d in sorted({table.dim for table in self.tables}))
        return f"tables {rows} x {dims}"

    def mlp_summary(self) -> str:
        widths = "-".join(str(width) for width in (self.mlp_in_features, *self.mlp))
        return f"MLP {widths} {self.mlp_activation}"


def behaviour_sequence_inputs(
    *,
    sequence_length: int,
    dim: int,
    profile_rows: int,
    item_rows: int,
    category_rows: int,
    context_rows: int,
    profile_lookups: int,
    context_lookups: int,
) -> tuple[tuple[TableConfig, ...], tuple[FeatureConfig, ...]]:
    """The inputs of the DIN and DIEN presets: four tables, six features.

    Tables: user_profile, item, category, context. Features, in this order: user_profile (a sum
    bag of `profile_lookups` ids), candidate_item, candidate_category (one id each, in the item
    and category tables), behaviour_item, behaviour_category (sequences of up to S ids in the same
    tables, their lengths long-tailed: `length_distribution="lognormal"`, the category's shared
    with the item's), context (a sum bag of `context_lookups` ids).
    """
    tables = (
        TableConfig("user_profile", profile_rows, dim),
        TableConfig("item", item_rows, dim),
        TableConfig("category", category_rows, dim),
        TableConfig("context", context_rows, dim),
    )
    sequence = {"capacity": sequence_length, "pooling": "none", "fixed_length": False}
    features = (
        FeatureConfig("user_profile", "user_profile", profile_lookups),
        FeatureConfig("candidate_item", "item", 1),
        FeatureConfig("candidate_category", "category", 1),
        FeatureConfig("behaviour_item", "item", **sequence, length_distribution="lognormal"),
        FeatureConfig("behaviour_category", "category", **sequence, lengths_from="behaviour_item"),
        FeatureConfig("context", "context", context_lookups),
    )
    return tables, features


def embed(model, batch: Features) -> dict[str, jax.Array]:
    """The lookups of a DIN or DIEN `model` (its `sparse_arch` and `config`), assembled.

    Returns {"pooled": [B, W], "candidate": [B, E], "behaviours": [B, S, E] (zeros past the
    length), "lengths": [B] int32, "dense": [B, F]}.
    """
    config = model.config
    rows = model.sparse_arch(batch)
    return {
        "pooled": jnp.concatenate([rows[f.name] for f in config.pooled_features], axis=-1),
        "candidate": jnp.concatenate([rows[name] for name in config.candidate_features], axis=-1),
        "behaviours": jnp.concatenate([rows[name] for name in config.behaviour_features], axis=-1),
        "lengths": batch.lengths_of(config.behaviour_features[0]),
        "dense": batch.dense,
    }


def mlp_logits(model, embedded: dict[str, jax.Array], interest: jax.Array) -> dict[str, jax.Array]:
    """{"click": logits [B]}: the `model`'s over arch on [pooled, interest, dense]."""
    inputs = jnp.concatenate([embedded["pooled"], interest, embedded["dense"]], axis=-1)
    return {"click": model.over_arch(inputs)[:, 0]}
