"""Feature interactions: how the dense vector meets the pooled embeddings, by name.

Every interaction is an NNX module taking the dense vector [B, H] and the pooled embeddings
[B, T, D] and returning [B, W], with class methods that give W and the FLOPs per sample from the
widths alone, so a config knows the top MLP's input width without building anything. A new
interaction (a parameterized one such as a cross network) is one new file and one line here.
"""

from recjax.layers.interactions.base import Interaction as Interaction
from recjax.layers.interactions.cat import CatInteraction as CatInteraction
from recjax.layers.interactions.cross import CrossInteraction as CrossInteraction
from recjax.layers.interactions.dot import DotInteraction as DotInteraction

INTERACTIONS: dict[str, type[Interaction]] = {
    "cat": CatInteraction,
    "cross": CrossInteraction,
    "dot": DotInteraction,
}


def interaction_class(name: str) -> type[Interaction]:
    """The interaction registered as `name`; raises ValueError listing the registered ones."""
    if name not in INTERACTIONS:
        raise ValueError(f"Unknown interaction {name!r}; expected one of {sorted(INTERACTIONS)}.")
    return INTERACTIONS[name]
