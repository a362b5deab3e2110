"""An eager PyTorch DIEN written the way PyTorch users write it, running a recjax model's weights.

The interest extractor is an `nn.GRU` over packed sequences (`pack_padded_sequence` of the
non-empty ones, as deepctr-torch does); the attention is an `nn.Linear` (bilinear, h_t W c) or
the activation-unit `nn.Sequential`, with a masked softmax; the interest evolution is an AUGRU cell
stepped by a Python loop up to the batch's longest sequence, each sample's state frozen past its
length; the MLP is an `nn.Sequential`. The "dien" family's twin in `recjax.interop.torch_twins`.
The auxiliary network is training-only and not part of the twin.

recjax's GRU gates follow the paper (update gate u, h = (1 - u) h + u h~); `nn.GRU`'s gate is
z = 1 - u, so its z rows are the negated u columns (`export_state_dict`). The AUGRU cell here uses
the paper's u, as deepctr-torch's `AUGRUCell` does.

Shapes: `B` batch, `S` sequence length, `E` item width, `H` hidden size.
"""

import numpy as np

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
from recjax.layers.recurrent import GRU
from recjax.models.dien import DIEN, DIENConfig

F = torch.nn.functional


class AUGRUCell(nn.Module):
    """The GRU cell with attentional update gate: u' = a * u, h = (1 - u') h + u' h~."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))

    def forward(self, x: torch.Tensor, h: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        input_r, input_u, input_n = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, 1)
        hidden_r, hidden_u, hidden_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, 1)
        reset = torch.sigmoid(input_r + hidden_r)
        update = score[:, None] * torch.sigmoid(input_u + hidden_u)
        candidate = torch.tanh(input_n + reset * hidden_n)
        return (1 - update) * h + update * candidate


class TorchDIEN(nn.Module):
    """DIEN in eager PyTorch.

    Input  a `TorchSequenceBatch`.
    Output click probabilities [B] float32.
    """

    def __init__(self, config: DIENConfig):
        super().__init__()
        self.config = config
        width, hidden = config.item_width, config.gru_hidden
        self.embeddings = embeddings(config)
        self.interest_extractor = nn.GRU(width, hidden, batch_first=True)
        if config.attention == "bilinear":
            self.attention = nn.Linear(width, hidden, bias=False)
        else:
            self.attention = mlp(
                4 * hidden, (*config.attention_mlp, 1), config.attention_activation, config
            )
        self.interest_evolution = AUGRUCell(hidden, hidden)
        self.mlp = mlp(config.mlp_in_features, config.mlp, config.mlp_activation, config)

    @classmethod
    def from_recjax(cls, model: DIEN) -> "TorchDIEN":
        return load(cls(model.config), export_state_dict(model))

    def lookup(self, inputs: TorchSequenceBatch, names: tuple[str, ...]) -> torch.Tensor:
        tables = {feature.name: feature.table for feature in self.config.features}
        return torch.cat([self.embeddings[tables[name]](inputs.ids[name]) for name in names], -1)

    def extract_interests(self, behaviours: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, S, H]: nn.GRU over the packed non-empty sequences, zeros elsewhere."""
        batch, steps, _ = behaviours.shape
        interests = behaviours.new_zeros(batch, steps, self.config.gru_hidden)
        nonempty = lengths > 0
        if nonempty.any():
            packed = nn.utils.rnn.pack_padded_sequence(
                behaviours[nonempty], lengths[nonempty], batch_first=True, enforce_sorted=False
            )
            states, _ = self.interest_extractor(packed)
            interests[nonempty], _ = nn.utils.rnn.pad_packed_sequence(
                states, batch_first=True, total_length=steps
            )
        return interests

    def attention_scores(
        self, interests: torch.Tensor, candidate: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """[B, S] softmax over the valid positions (zeros for an empty sequence)."""
        if self.config.attention == "bilinear":
            scores = torch.bmm(interests, self.attention(candidate)[:, :, None])[:, :, 0]
        else:
            queries = candidate[:, None, :].expand_as(interests)
            unit_inputs = torch.cat(
                [interests, queries, interests - queries, interests * queries], dim=-1
            )
            scores = self.attention(unit_inputs).squeeze(-1)
        scores = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.nan_to_num(scores, nan=0.0)

    def evolve(self, interests, scores, mask) -> torch.Tensor:
        """[B, H]: the AUGRU's state at each sample's last valid step, a Python loop over t."""
        state = interests.new_zeros(interests.shape[0], self.config.gru_hidden)
        for t in range(int(mask.sum(1).max())):
            stepped = self.interest_evolution(interests[:, t], state, scores[:, t])
            state = torch.where(mask[:, t, None], stepped, state)
        return state

    def forward(self, inputs: TorchSequenceBatch) -> torch.Tensor:
        config = self.config
        behaviours = self.lookup(inputs, config.behaviour_features)  # [B, S, E]
        candidate = self.lookup(inputs, config.candidate_features)[:, 0]  # [B, E]
        mask = torch.arange(behaviours.shape[1])[None, :] < inputs.lengths[:, None]  # [B, S]
        interests = self.extract_interests(behaviours, inputs.lengths)
        scores = self.attention_scores(interests, candidate, mask)
        final = self.evolve(interests, scores, mask)
        features = torch.cat([*pooled(self.embeddings, config, inputs), final, inputs.dense], -1)
        return torch.sigmoid(self.mlp(features)[:, 0])


def _gru_state(gru: GRU, negate_update: bool) -> dict[str, np.ndarray]:
    """weight_ih [3H, E], weight_hh [3H, H], bias_ih, bias_hh [3H] of a recjax GRU; with
    `negate_update`, nn.GRU's z = 1 - u (the u rows negated)."""
    hidden = gru.hidden
    sign = np.ones(3 * hidden, np.float32)
    if negate_update:
        sign[hidden : 2 * hidden] = -1.0
    return {
        "weight_ih": np.ascontiguousarray(np.asarray(gru.input_kernel[...]).T * sign[:, None]),
        "weight_hh": np.ascontiguousarray(np.asarray(gru.hidden_kernel[...]).T * sign[:, None]),
        "bias_ih": np.asarray(gru.input_bias[...]) * sign,
        "bias_hh": np.asarray(gru.hidden_bias[...]) * sign,
    }


def export_state_dict(model: DIEN) -> dict[str, np.ndarray]:
    """The inference parameters of a recjax DIEN under `TorchDIEN`'s keys."""
    config = model.config
    state = export_tables(model)
    for key, value in _gru_state(model.interest_extractor, negate_update=True).items():
        state[f"interest_extractor.{key}_l0"] = value
    for key, value in _gru_state(model.interest_evolution, negate_update=False).items():
        state[f"interest_evolution.{key}"] = value
    if config.attention == "bilinear":
        state["attention.weight"] = np.array(model.attention.kernel[...])  # [H, E]
    else:
        state |= export_feed_forward(model.attention.mlp, "attention", config.attention_activation)
    state |= export_feed_forward(model.over_arch, "mlp", config.mlp_activation)
    return state


class TorchPredictor(SequenceTwinPredictor):
    """The twin predictor of a recjax DIEN (see `SequenceTwinPredictor`)."""

    module_class = TorchDIEN
