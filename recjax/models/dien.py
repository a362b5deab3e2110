"""DIEN, the Deep Interest Evolution Network (Zhou et al., AAAI 2019).

    behaviours e_1..e_S [B, S, E] ─► interest extractor: masked GRU ─► h_1..h_S [B, S, H]
                                                                        (auxiliary loss: training)
    candidate c [B, E] ─► attention a_t = softmax over valid t of h_t W c ─► [B, S]

    h_1..h_S, a_1..a_S ─► interest evolution: AUGRU, u'_t = a_t u_t ─► h'_(length-1) [B, H]
                                                                        (zeros when empty)
    [pooled embeddings, h', dense] ─► MLP 200-80-1, Dice ─► logit [B]

The auxiliary loss (eq. 7) supervises each h_t with the next behaviour e_(t+1) against a negative
sample ê_(t+1): L_aux = -1/B sum_samples sum_valid t [log sigmoid(h_t . e_(t+1)) +
log(1 - sigmoid(h_t . ê_(t+1)))]. It is a method of the module for training
(`auxiliary_loss`, `training_loss`) and is never computed in inference (`__call__`).

Config options give the forms of the authors' code and deepctr-torch where the paper differs:
`attention="mlp"` scores with DIN's activation unit over [h, c, h - c, h * c] (then the same
softmax), and `auxiliary_loss="mlp"` replaces the inner product with a small MLP over [h_t, e].
See docs/design/din-dien.md. Shapes: see `recjax.models.behaviour_sequence`; `H` is the GRU's
hidden size.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.inputs.features import Features
from recjax.layers.activations import FeedForward, check_activation
from recjax.layers.attention import (
    BilinearAttention,
    LocalActivationUnit,
    masked_softmax,
)
from recjax.layers.embedding_bag import lookup_sequence
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.recurrent import AUGRU, GRU, LOOPS, gru_flops, valid_positions
from recjax.models import behaviour_sequence
from recjax.models.behaviour_sequence import BehaviourSequenceConfig
from recjax.models.family import Stage

ATTENTIONS = ("bilinear", "mlp")
AUXILIARY_LOSSES = ("inner_product", "mlp")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DIENConfig(BehaviourSequenceConfig):
    """A DIEN (see `BehaviourSequenceConfig` for the inputs and the MLP).

    Attributes:
      gru_hidden: H, the hidden size of both recurrent layers (64).
      attention: "bilinear", the paper's h_t W c; or "mlp", DIN's activation unit over
        [h, c, h - c, h * c] (the authors' code and deepctr-torch; needs H = E). Both are
        normalized by a softmax over the valid positions.
      attention_mlp: hidden widths of the "mlp" attention (the score layer is added).
      attention_activation: of the "mlp" attention's hidden layers ("sigmoid" in the authors'
        code, "relu" in deepctr-torch's default).
      auxiliary_loss: "inner_product", the paper's sigmoid(h_t . e) (needs H = E); or "mlp",
        sigmoid of a sigmoid-activated MLP over [h_t, e] (deepctr-torch's).
      auxiliary_mlp: hidden widths of the "mlp" auxiliary network (the output layer is added).
      auxiliary_loss_weight: alpha in L = L_target + alpha L_aux.
      recurrence_loop: how the GRU and AUGRU loop over time (`recjax.layers.recurrent`):
        "longest", a while loop that stops after the batch's longest sequence, or "scan", all S
        steps; both are one program for every length, and give the same results.
      recurrence_unroll: steps per loop iteration (a compile-time choice; same results).
      recurrence_block_size: with the "longest" loop, sort each batch larger than this by length
        and run each block of at most this many samples as a loop of its own, stopping after the
        block's longest sequence (the work then follows the lengths, as packed sequences' does;
        same results). 0: one loop for the whole batch.
    """

    gru_hidden: int = 64
    attention: str = "bilinear"
    attention_mlp: tuple[int, ...] = (80, 40)
    attention_activation: str = "sigmoid"
    auxiliary_loss: str = "inner_product"
    auxiliary_mlp: tuple[int, ...] = (100, 50)
    auxiliary_loss_weight: float = 1.0
    recurrence_loop: str = "longest"
    recurrence_unroll: int = 1
    recurrence_block_size: int = 32

    def __post_init__(self):
        super().__post_init__()
        if min(self.gru_hidden, self.recurrence_unroll) <= 0 or self.recurrence_block_size < 0:
            raise ValueError(
                f"{self.name}: gru_hidden and recurrence_unroll must be positive and "
                f"recurrence_block_size at least 0; got gru_hidden={self.gru_hidden}, "
                f"recurrence_unroll={self.recurrence_unroll}, recurrence_block_size="
                f"{self.recurrence_block_size}."
            )
        for field, value, accepted in (
            ("attention", self.attention, ATTENTIONS),
            ("auxiliary_loss", self.auxiliary_loss, AUXILIARY_LOSSES),
            ("recurrence_loop", self.recurrence_loop, LOOPS),
        ):
            if value not in accepted:
                raise ValueError(
                    f"{self.name}: unknown {field} {value!r}; expected one of {accepted}."
                )
        check_activation(self.name, "attention_activation", self.attention_activation)
        for field, widths in (
            ("attention_mlp", self.attention_mlp),
            ("auxiliary_mlp", self.auxiliary_mlp),
        ):
            if not widths or min(widths) <= 0:
                raise ValueError(f"{self.name}: {field} must be positive widths; got {widths}.")
        needs_equal = []
        if self.attention == "mlp":
            needs_equal.append("attention='mlp'")
        if self.auxiliary_loss == "inner_product":
            needs_equal.append("auxiliary_loss='inner_product'")
        if needs_equal and self.gru_hidden != self.item_width:
            raise ValueError(
                f"{self.name}: {' and '.join(needs_equal)} compare hidden states with items, so "
                f"gru_hidden must equal the item width E = {self.item_width}; got gru_hidden="
                f"{self.gru_hidden} (auxiliary_loss='mlp' and attention='bilinear' take any)."
            )

    @property
    def interest_width(self) -> int:
        return self.gru_hidden

    def build(self, rngs: nnx.Rngs) -> "DIEN":
        return DIEN(self, rngs=rngs)

    def dense_flops_per_sample(self) -> int:
        """GRU and AUGRU at every one of the S steps (full-length sequences), attention, MLP (no
        auxiliary loss)."""
        steps = self.sequence_length
        if self.attention == "bilinear":
            attention = BilinearAttention.flops(self.gru_hidden, self.item_width, steps)
        else:
            per_position = LocalActivationUnit.flops_per_position(
                self.gru_hidden, self.attention_mlp
            )
            attention = steps * per_position
        extractor = steps * gru_flops(self.item_width, self.gru_hidden)
        evolution = steps * gru_flops(self.gru_hidden, self.gru_hidden)
        return extractor + attention + evolution + self.mlp_flops()

    def stages(self) -> tuple[Stage, ...]:
        return (
            Stage("embedding", ("batch",), lambda model, batch: model.embed(batch), "embedding"),
            Stage(
                "gru",
                ("embedding",),
                lambda model, embedded: model.extract_interests(embedded),
                "other",
            ),
            Stage(
                "attention",
                ("embedding", "gru"),
                lambda model, embedded, interests: model.attention_scores(embedded, interests),
                "interaction",
            ),
            Stage(
                "augru",
                ("embedding", "gru", "attention"),
                lambda model, embedded, interests, scores: model.evolve(
                    embedded, interests, scores
                ),
                "other",
            ),
            Stage(
                "mlp",
                ("embedding", "augru"),
                lambda model, embedded, final: model.logits(embedded, final),
                "fc",
            ),
        )

    def architecture_summary(self) -> str:
        attention = (
            f"{self.gru_hidden}x{self.item_width} bilinear"
            if self.attention == "bilinear"
            else "activation unit "
            + "-".join(str(w) for w in (4 * self.gru_hidden, *self.attention_mlp, 1))
        )
        return (
            f"S={self.sequence_length} behaviours x {self.item_width} wide, GRU "
            f"{self.item_width}->{self.gru_hidden}, {attention} attention (softmax), AUGRU "
            f"{self.gru_hidden}->{self.gru_hidden}, {self.mlp_summary()}, {self.tables_summary()}"
        )


class DIEN(nnx.Module):
    """The DIEN network: sparse arch, interest extractor (GRU), attention, interest evolution
    (AUGRU), over arch (MLP); and, for training, the auxiliary network's loss.

    Input  a `Features` batch of the config's features (and dense [B, F]).
    Output {"click": logits [B]}.

    Example:
        >>> model = configs.get("dien-tiny").build(nnx.Rngs(0))
        >>> model(synthetic_features(model.config, 4, seed=0))["click"].shape
        (4,)
    """

    def __init__(self, config: DIENConfig, *, rngs: nnx.Rngs):
        self.config = config
        width, hidden = config.item_width, config.gru_hidden
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )
        loop = {
            "loop": config.recurrence_loop,
            "unroll": config.recurrence_unroll,
            "block_size": config.recurrence_block_size or None,
        }
        self.interest_extractor = GRU(width, hidden, **loop, rngs=rngs)
        if config.attention == "bilinear":
            self.attention = BilinearAttention(hidden, width, rngs=rngs)
        else:
            self.attention = LocalActivationUnit(
                hidden,
                config.attention_mlp,
                activation=config.attention_activation,
                dice_epsilon=config.dice_epsilon,
                dice_affine=config.dice_affine,
                rngs=rngs,
            )
        self.interest_evolution = AUGRU(hidden, hidden, **loop, rngs=rngs)
        self.over_arch = FeedForward(
            config.mlp_in_features,
            config.mlp,
            activation=config.mlp_activation,
            dice_epsilon=config.dice_epsilon,
            dice_affine=config.dice_affine,
            rngs=rngs,
        )
        self.auxiliary_net = nnx.data(
            FeedForward(hidden + width, (*config.auxiliary_mlp, 1), activation="sigmoid", rngs=rngs)
            if config.auxiliary_loss == "mlp"
            else None
        )

    # --- inference ----------------------------------------------------------------------------

    def embed(self, batch: Features) -> dict[str, jax.Array]:
        return behaviour_sequence.embed(self, batch)

    def extract_interests(self, embedded: dict[str, jax.Array], loop: str | None = None):
        """[B, S, H]: the GRU's state after each behaviour, zeros past the length (`loop`
        overrides the config's recurrence_loop)."""
        interests, _ = self.interest_extractor(
            embedded["behaviours"], embedded["lengths"], loop=loop
        )
        return interests

    def attention_scores(self, embedded: dict[str, jax.Array], interests: jax.Array) -> jax.Array:
        """[B, S]: softmax over the valid positions of each state's score for the candidate
        (zeros at padding, all zeros for an empty sequence)."""
        valid = valid_positions(embedded["lengths"], interests.shape[1])
        if self.config.attention == "bilinear":
            scores = self.attention(interests, embedded["candidate"])
        else:
            scores = self.attention(interests, embedded["candidate"], valid)
        return masked_softmax(scores, valid)

    def evolve(
        self,
        embedded: dict[str, jax.Array],
        interests: jax.Array,
        scores: jax.Array,
        loop: str | None = None,
    ) -> jax.Array:
        """[B, H]: the AUGRU's state at position length - 1 (zeros for an empty sequence)."""
        return self.interest_evolution(interests, scores, embedded["lengths"], loop=loop)

    def logits(self, embedded: dict[str, jax.Array], final: jax.Array) -> dict[str, jax.Array]:
        return behaviour_sequence.mlp_logits(self, embedded, final)

    def _forward(
        self, batch: Features, loop: str | None = None
    ) -> tuple[dict[str, jax.Array], dict, jax.Array]:
        embedded = self.embed(batch)
        interests = self.extract_interests(embedded, loop)
        scores = self.attention_scores(embedded, interests)
        final = self.evolve(embedded, interests, scores, loop)
        return self.logits(embedded, final), embedded, interests

    def __call__(self, batch: Features) -> dict[str, jax.Array]:
        return self._forward(batch)[0]

    # --- training -------------------------------------------------------------------------------

    def negative_behaviours(self, negatives: Mapping[str, jax.Array], lengths: jax.Array):
        """[B, S, E]: the rows of negative samples {behaviour feature: [B, S] ids} (ids in the
        behaviour feature's table), zeros past the length."""
        missing = [name for name in self.config.behaviour_features if name not in negatives]
        if missing:
            raise ValueError(
                f"{self.config.name}: negatives needs ids for every behaviour feature "
                f"{list(self.config.behaviour_features)}; missing {missing}."
            )
        sparse_arch = self.sparse_arch
        rows = []
        for name in self.config.behaviour_features:
            table = next(f.table for f in self.config.features if f.name == name)
            group = sparse_arch.table_group[table]
            buffer = sparse_arch.tables[group][...]
            ids = jnp.asarray(negatives[name], jnp.int32)
            offset = sparse_arch.table_offset[table]
            rows.append(
                lookup_sequence(buffer, ids, lengths, offset, sparse_arch.row_formats[group])
            )
        return jnp.concatenate(rows, axis=-1)

    def auxiliary_logits(self, states: jax.Array, items: jax.Array) -> jax.Array:
        """[B, S'] logits that state h_t is followed by item e: h_t . e, or the auxiliary MLP."""
        if self.auxiliary_net is None:
            return jnp.sum(states * items, axis=-1)
        return self.auxiliary_net(jnp.concatenate([states, items], axis=-1))[..., 0]

    def auxiliary_loss(
        self,
        batch: Features,
        negatives: Mapping[str, jax.Array],
        *,
        embedded: dict[str, jax.Array] | None = None,
        interests: jax.Array | None = None,
    ) -> jax.Array:
        """The paper's L_aux (eq. 7), a scalar: for every sample and every t with t + 1 below
        its length, -log sigmoid(logit(h_t, e_(t+1))) - log(1 - sigmoid(logit(h_t, ê_(t+1)))),
        summed over t and averaged over the B samples.

        Args:
          batch: the batch (its behaviours are the positives).
          negatives: {behaviour feature: [B, S] ids}, ê_(t) at position t (see
            `sample_negatives`); positions past the length are ignored.
          embedded, interests: the outputs of `embed` and `extract_interests` for this batch,
            when the caller has them (`training_loss`). Computed here, the interests come from a
            `lax.scan` (differentiable).
        """
        if embedded is None:
            embedded = self.embed(batch)
        if interests is None:
            interests = self.extract_interests(embedded, loop="scan")
        lengths = embedded["lengths"]
        clicked = embedded["behaviours"][:, 1:]
        unclicked = self.negative_behaviours(negatives, lengths)[:, 1:]
        states = interests[:, :-1]
        pairs = valid_positions(lengths - 1, states.shape[1])  # t + 1 < length
        positive = jax.nn.log_sigmoid(self.auxiliary_logits(states, clicked))
        negative = jax.nn.log_sigmoid(-self.auxiliary_logits(states, unclicked))
        return -jnp.sum(jnp.where(pairs, positive + negative, 0.0)) / lengths.shape[0]

    def training_loss(
        self, batch: Features, negatives: Mapping[str, jax.Array]
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """L = L_target + alpha L_aux (eq. 8): the click log loss (mean over the batch, labels
        from `batch.labels["click"]`) plus the weighted auxiliary loss.

        Returns (L, {"target": L_target, "auxiliary": L_aux}). Call `model.train()` first to use
        batch statistics in Dice (and update their moving averages). The recurrences run as
        `lax.scan`s here, whatever the config's recurrence_loop: only a scan has a reverse-mode
        derivative.
        """
        if batch.labels is None or "click" not in batch.labels:
            raise ValueError(f"{self.config.name}: training needs batch.labels['click'].")
        logits, embedded, interests = self._forward(batch, loop="scan")
        labels = jnp.asarray(batch.labels["click"], jnp.float32)
        target = -jnp.mean(
            labels * jax.nn.log_sigmoid(logits["click"])
            + (1.0 - labels) * jax.nn.log_sigmoid(-logits["click"])
        )
        auxiliary = self.auxiliary_loss(batch, negatives, embedded=embedded, interests=interests)
        total = target + self.config.auxiliary_loss_weight * auxiliary
        return total, {"target": target, "auxiliary": auxiliary}


def sample_negatives(config: DIENConfig, batch: Features, seed: int) -> dict[str, np.ndarray]:
    """{behaviour feature: [B, S] int32 ids}: for each behaviour, an id of its table drawn
    uniformly among all but the clicked one (the paper's negative sampling), 0 past the length.

    Each behaviour feature is drawn on its own: a negative item's category is not the category
    of that item (a synthetic batch has no item-to-category map).
    """
    rng = np.random.default_rng(seed)
    lengths = np.asarray(batch.lengths_of(config.behaviour_features[0]))
    negatives = {}
    for name in config.behaviour_features:
        table = config.table(next(f.table for f in config.features if f.name == name))
        if table.num_rows < 2:
            raise ValueError(
                f"{config.name}: negative sampling needs at least 2 rows in table {table.name!r}; "
                f"it has {table.num_rows}."
            )
        clicked = np.asarray(batch.ids_of(name))
        offset = rng.integers(1, table.num_rows, size=clicked.shape)
        drawn = (clicked.astype(np.int64) + offset) % table.num_rows
        valid = np.arange(clicked.shape[1])[None, :] < lengths[:, None]
        negatives[name] = np.where(valid, drawn, 0).astype(np.int32)
    return negatives
