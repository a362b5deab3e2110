"""An eager PyTorch DIN written the way PyTorch users write it, running a recjax model's weights.

One `nn.Embedding` per table (the candidate's and the behaviours' lookups share the item and
category tables), the local activation unit as an `nn.Sequential` over
`torch.cat([h, c, h - c, h * c], -1)`, the scores masked by length (or a masked softmax), a
`bmm` weighted sum, and the MLP as an `nn.Sequential`; Dice is a `BatchNorm1d` in eval mode plus
a slope (`recjax.interop.torch_sequence`). The "din" family's twin in
`recjax.interop.torch_twins`.

Shapes: `B` batch, `S` sequence length, `E` item width.
"""

from recjax.interop.torch_sequence import (
    SequenceTwinPredictor,
    TorchSequenceBatch,
    embeddings,
    export_feed_forward,
    export_tables,
    load,
    mlp,
    nn,
    pooled,
    torch,
)
from recjax.models.din import DIN, DINConfig


class TorchDIN(nn.Module):
    """DIN in eager PyTorch.

    Input  a `TorchSequenceBatch`.
    Output click probabilities [B] float32.

    Example:
        >>> module = TorchDIN.from_recjax(model)
        >>> with torch.inference_mode():
        ...     module(inputs).shape
        torch.Size([B])
    """

    def __init__(self, config: DINConfig):
        super().__init__()
        self.config = config
        width = config.item_width
        self.embeddings = embeddings(config)
        self.attention = mlp(
            4 * width, (*config.attention_mlp, 1), config.attention_activation, config
        )
        self.mlp = mlp(config.mlp_in_features, config.mlp, config.mlp_activation, config)

    @classmethod
    def from_recjax(cls, model: DIN) -> "TorchDIN":
        config = model.config
        state = export_tables(model)
        state |= export_feed_forward(model.attention.mlp, "attention", config.attention_activation)
        state |= export_feed_forward(model.over_arch, "mlp", config.mlp_activation)
        return load(cls(config), state)

    def lookup(self, inputs: TorchSequenceBatch, names: tuple[str, ...]) -> torch.Tensor:
        tables = {feature.name: feature.table for feature in self.config.features}
        return torch.cat([self.embeddings[tables[name]](inputs.ids[name]) for name in names], -1)

    def forward(self, inputs: TorchSequenceBatch) -> torch.Tensor:
        config = self.config
        behaviours = self.lookup(inputs, config.behaviour_features)  # [B, S, E]
        candidate = self.lookup(inputs, config.candidate_features)[:, 0]  # [B, E]
        mask = torch.arange(behaviours.shape[1])[None, :] < inputs.lengths[:, None]  # [B, S]

        queries = candidate[:, None, :].expand_as(behaviours)
        unit_inputs = torch.cat(
            [behaviours, queries, behaviours - queries, behaviours * queries], dim=-1
        )
        scores = self.attention(unit_inputs).squeeze(-1)  # [B, S]
        if config.attention_softmax:
            scores = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            weights = torch.nan_to_num(scores, nan=0.0)  # an empty sequence: no weight
        else:
            weights = scores * mask
        interest = torch.bmm(weights[:, None, :], behaviours)[:, 0]  # [B, E]

        features = torch.cat([*pooled(self.embeddings, config, inputs), interest, inputs.dense], -1)
        return torch.sigmoid(self.mlp(features)[:, 0])


class TorchPredictor(SequenceTwinPredictor):
    """The twin predictor of a recjax DIN (see `SequenceTwinPredictor`)."""

    module_class = TorchDIN
