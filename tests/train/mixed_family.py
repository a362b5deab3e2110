"""A small test family with every kind of sparse feature, two heads and dropout.

Sum, mean, weighted, ragged and sequence features; two tables shared by two features each; two
table groups (dims 4 and 3). It follows the family contract (config.build, model(batch) ->
{head: logits}, `model.sparse_arch` an EmbeddingCollection) without being registered, so the
training code is tested on more than DLRM.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.models.family import ModelConfig

TABLES = (TableConfig("a", 7, 4), TableConfig("b", 5, 4), TableConfig("c", 6, 3))
FEATURES = (
    FeatureConfig("sum_a", "a", capacity=3),
    FeatureConfig("mean_b", "b", capacity=4, pooling="mean", fixed_length=False),
    FeatureConfig("weighted_a", "a", capacity=3, weighted=True, fixed_length=False),
    FeatureConfig("weighted_mean_c", "c", capacity=2, pooling="mean", weighted=True),
    FeatureConfig("sequence_b", "b", capacity=5, pooling="none", fixed_length=False),
    FeatureConfig("sequence_c", "c", capacity=3, pooling="none"),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MixedConfig(ModelConfig):
    heads: tuple[str, ...] = ("click", "like")
    dropout: float = 0.0

    def build(self, rngs: nnx.Rngs) -> "MixedModel":
        return MixedModel(self, rngs=rngs)

    def dense_flops_per_sample(self) -> int:
        return 0

    def architecture_summary(self) -> str:
        return "mixed test family"


def mixed_config(lowering: str = "pooling_loop", dropout: float = 0.0) -> MixedConfig:
    return MixedConfig(
        name="mixed",
        tables=TABLES,
        features=FEATURES,
        dense_features=2,
        embedding_lowering=lowering,
        dropout=dropout,
    )


class MixedModel(nnx.Module):
    """Rows of sequence features go through tanh and a sum (so each position's gradient
    differs); everything is concatenated, dropped out, and a linear layer gives two logits."""

    def __init__(self, config: MixedConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )
        width = config.dense_features + sum(
            config.table(feature.table).dim for feature in config.features
        )
        self.hidden = nnx.Linear(width, 8, rngs=rngs)
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.out = nnx.Linear(8, len(config.heads), rngs=rngs)

    def __call__(self, batch) -> dict[str, jax.Array]:
        looked_up = self.sparse_arch(batch)
        parts = [batch.dense]
        for feature in self.config.features:
            value = looked_up[feature.name]
            parts.append(jnp.tanh(value).sum(axis=1) if value.ndim == 3 else value)
        hidden = self.dropout(jnp.tanh(self.hidden(jnp.concatenate(parts, axis=1))))
        logits = self.out(hidden)
        return {head: logits[:, index] for index, head in enumerate(self.config.heads)}
