"""Building blocks of recommendation models: MLPs, embedding bags, feature interactions."""

from recjax.layers.embedding_bag import LOWERINGS as LOWERINGS
from recjax.layers.embedding_collection import EmbeddingCollection as EmbeddingCollection
from recjax.layers.interactions import INTERACTIONS as INTERACTIONS
from recjax.layers.mlp import MLP as MLP
