"""DIN, the Deep Interest Network (Zhou et al., KDD 2018).

    behaviours h_1..h_S [B, S, E] ─┐
                                   ├─► local activation unit ─► scores a_s [B, S]
    candidate c [B, E] ────────────┘   MLP over [h, c, h - c, h * c], 80-40-1, Dice
                                                   │
    interest v = sum_s a_s h_s (valid s only; no softmax) [B, E]
                                                   │
    [pooled embeddings, v, dense] ─► MLP 200-80-1, Dice ─► logit [B]

The scores weight the behaviours as they are: the paper drops softmax normalization to keep the
intensity of the user's interests (`attention_softmax=True` normalizes over the valid positions).
Padded positions and empty sequences contribute nothing. Dice uses the moving averages of its
statistics in inference (`recjax.layers.activations`). Shapes: see
`recjax.models.behaviour_sequence`.
"""

import dataclasses

import jax
from flax import nnx

from recjax.inputs.features import Features
from recjax.layers.activations import FeedForward, check_activation
from recjax.layers.attention import LocalActivationUnit, attention_weights, weighted_sum
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.recurrent import valid_positions
from recjax.models import behaviour_sequence
from recjax.models.behaviour_sequence import BehaviourSequenceConfig
from recjax.models.family import Stage


@dataclasses.dataclass(frozen=True, kw_only=True)
class DINConfig(BehaviourSequenceConfig):
    """A DIN (see `BehaviourSequenceConfig` for the inputs and the MLP).

    Attributes:
      attention_mlp: hidden widths of the local activation unit (its last layer, one score, is
        added): (80, 40).
      attention_activation: of the unit's hidden layers: "dice" (the paper's), "prelu", "relu"
        or "sigmoid".
      attention_softmax: normalize the scores with a softmax over the valid positions (the
        paper does not).
    """

    attention_mlp: tuple[int, ...] = (80, 40)
    attention_activation: str = "dice"
    attention_softmax: bool = False

    def __post_init__(self):
        super().__post_init__()
        if not self.attention_mlp or min(self.attention_mlp) <= 0:
            raise ValueError(
                f"{self.name}: attention_mlp must be positive widths; got {self.attention_mlp}."
            )
        check_activation(self.name, "attention_activation", self.attention_activation)

    @property
    def interest_width(self) -> int:
        return self.item_width

    def build(self, rngs: nnx.Rngs) -> "DIN":
        return DIN(self, rngs=rngs)

    def dense_flops_per_sample(self) -> int:
        """Activation unit at every one of the S positions, weighted sum, MLP."""
        attention = LocalActivationUnit.flops_per_position(self.item_width, self.attention_mlp)
        pooling = 2 * self.item_width
        return self.sequence_length * (attention + pooling) + self.mlp_flops()

    def stages(self) -> tuple[Stage, ...]:
        return (
            Stage("embedding", ("batch",), lambda model, batch: model.embed(batch), "embedding"),
            Stage(
                "attention",
                ("embedding",),
                lambda model, embedded: model.interest(embedded),
                "interaction",
            ),
            Stage(
                "mlp",
                ("embedding", "attention"),
                lambda model, embedded, interest: model.logits(embedded, interest),
                "fc",
            ),
        )

    def architecture_summary(self) -> str:
        unit = "-".join(str(w) for w in (4 * self.item_width, *self.attention_mlp, 1))
        normalization = "softmax" if self.attention_softmax else "no softmax"
        return (
            f"S={self.sequence_length} behaviours x {self.item_width} wide, activation unit "
            f"{unit} {self.attention_activation} ({normalization}), {self.mlp_summary()}, "
            f"{self.tables_summary()}"
        )


class DIN(nnx.Module):
    """The DIN network: sparse arch, local activation unit, over arch (MLP).

    Input  a `Features` batch of the config's features (and dense [B, F]).
    Output {"click": logits [B]}.

    Example:
        >>> model = configs.get("din-tiny").build(nnx.Rngs(0))
        >>> model(synthetic_features(model.config, 4, seed=0))["click"].shape
        (4,)
    """

    def __init__(self, config: DINConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )
        self.attention = LocalActivationUnit(
            config.item_width,
            config.attention_mlp,
            activation=config.attention_activation,
            dice_epsilon=config.dice_epsilon,
            dice_affine=config.dice_affine,
            rngs=rngs,
        )
        self.over_arch = FeedForward(
            config.mlp_in_features,
            config.mlp,
            activation=config.mlp_activation,
            dice_epsilon=config.dice_epsilon,
            dice_affine=config.dice_affine,
            rngs=rngs,
        )

    def embed(self, batch: Features) -> dict[str, jax.Array]:
        return behaviour_sequence.embed(self, batch)

    def interest(self, embedded: dict[str, jax.Array]) -> jax.Array:
        """[B, E]: the behaviours weighted by their activation for the candidate."""
        behaviours = embedded["behaviours"]
        valid = valid_positions(embedded["lengths"], behaviours.shape[1])
        scores = self.attention(behaviours, embedded["candidate"], valid)
        weights = attention_weights(scores, valid, softmax=self.config.attention_softmax)
        return weighted_sum(weights, behaviours)

    def logits(self, embedded: dict[str, jax.Array], interest: jax.Array) -> dict[str, jax.Array]:
        return behaviour_sequence.mlp_logits(self, embedded, interest)

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        embedded = self.embed(batch)
        return self.logits(embedded, self.interest(embedded))
