"""Building blocks of recommendation models: MLPs, embedding bags, feature interactions."""

from recjax.layers.embedding_bag import LOWERINGS as LOWERINGS
from recjax.layers.embedding_bag import EmbeddingBagCollection as EmbeddingBagCollection
from recjax.layers.embedding_bag import EmbeddingTableConfig as EmbeddingTableConfig
from recjax.layers.embedding_bag import gather_sum as gather_sum
from recjax.layers.embedding_bag import pooling_loop as pooling_loop
from recjax.layers.interaction import INTERACTIONS as INTERACTIONS
from recjax.layers.interaction import cat_interaction as cat_interaction
from recjax.layers.interaction import dot_interaction as dot_interaction
from recjax.layers.mlp import MLP as MLP
