"""deepctr-torch's DIN and DIEN (AUGRU) state dicts imported into recjax.

State dicts are built by hand from the keys and shapes of deepctr-torch 0.3.0's source, and the
imported models are compared with a NumPy transcription of deepctr-torch's forward passes
([c, h, c - h, c * h] activation unit, nn.GRU's z gate, its MLP orders). Where deepctr-torch is
installed (`pip install deepctr-torch==0.3.0 --no-deps`), the same dicts are loaded into the real
modules too and their outputs (and DIEN's auxiliary loss) compared with recjax's.
"""

import dataclasses
import importlib
import sys
import types

import jax
import numpy as np
import pytest

from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.interop.deepctr import (
    StateDictMismatchError,
    dien_shapes,
    din_shapes,
    import_dien_state_dict,
    import_din_state_dict,
)
from recjax.models.dien import DIENConfig, sample_negatives
from recjax.models.din import DINConfig
from tests.models import sequence_reference as reference

S, D = 6, 4
LENGTHS = [0, 1, 3, 6, 2]
TABLES = (TableConfig("user", 11, D), TableConfig("item", 23, D), TableConfig("cate", 7, D))
SEQUENCE = {"capacity": S, "pooling": "none", "fixed_length": False}
FEATURES = (
    FeatureConfig("user", "user", 1),
    FeatureConfig("item", "item", 1),
    FeatureConfig("cate", "cate", 1),
    FeatureConfig("hist_item", "item", **SEQUENCE),
    FeatureConfig("hist_cate", "cate", **SEQUENCE, lengths_from="hist_item"),
)
SHARED = {
    "tables": TABLES,
    "features": FEATURES,
    "dense_features": 1,
    "sequence_length": S,
    "candidate_features": ("item", "cate"),
    "behaviour_features": ("hist_item", "hist_cate"),
    "attention_mlp": (8, 6),
    "mlp": (12, 10, 1),
    "embedding_lowering": "gather_sum",
}
DIN_CONFIG = DINConfig(
    name="deepctr-din",
    **SHARED,
    attention_activation="dice",
    mlp_activation="relu",
    dice_affine=True,
)
DIEN_CONFIG = DIENConfig(
    name="deepctr-dien",
    **SHARED,
    gru_hidden=2 * D,
    attention="mlp",
    attention_activation="relu",
    mlp_activation="relu",
    auxiliary_loss="mlp",
)


def random_state_dict(shapes, seed):
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(3, np.int64)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif key.startswith("embedding_dict"):
            state[key] = rng.normal(0, 0.6, shape).astype(np.float32)
        else:
            state[key] = rng.normal(0, 0.4, shape).astype(np.float32)
    return state


# --- deepctr-torch's forward passes, transcribed to NumPy ---------------------------------------


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def deepctr_activation(name, x, state, key):
    if name == "dice":  # Dice(dim=3): BatchNorm1d in eval mode, then the slope
        bn = {s: state[f"{key}.bn.{s}"] for s in ("weight", "bias", "running_mean", "running_var")}
        normalized = (x - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-8)
        p = sigmoid(normalized * bn["weight"] + bn["bias"])
        return state[f"{key}.alpha"][:, 0] * (1 - p) * x + p * x
    if name == "prelu":
        return np.where(x > 0, x, state[f"{key}.weight"][0] * x)
    return np.maximum(x, 0) if name == "relu" else sigmoid(x)


def deepctr_dnn(x, state, prefix, count, activation):
    for index in range(count):
        w, b = state[f"{prefix}.linears.{index}.weight"], state[f"{prefix}.linears.{index}.bias"]
        x = deepctr_activation(
            activation, x @ w.T + b, state, f"{prefix}.activation_layers.{index}"
        )
    return x


def deepctr_local_activation(query, keys, state, prefix, activation, layers):
    scores = []
    for k in keys:
        hidden = deepctr_dnn(
            np.concatenate([query, k, query - k, query * k]),
            state,
            f"{prefix}.dnn",
            layers,
            activation,
        )
        scores.append(
            hidden @ state[f"{prefix}.dense.weight"][0] + state[f"{prefix}.dense.bias"][0]
        )
    return np.asarray(scores)


def inputs_of(batch):
    """Per sample: (user, item, cate ids, hist_item, hist_cate up to the length, price)."""
    ids = {name: np.asarray(batch.ids_of(name)) for name in batch.layout.names}
    lengths = np.asarray(batch.lengths_of("hist_item"))
    for sample in range(batch.batch_size):
        n = lengths[sample]
        yield (
            ids["user"][sample, 0],
            ids["item"][sample, 0],
            ids["cate"][sample, 0],
            ids["hist_item"][sample, :n],
            ids["hist_cate"][sample, :n],
            np.asarray(batch.dense)[sample],
        )


def deepctr_din_probabilities(state, batch):
    table = {name: state[f"embedding_dict.{name}.weight"] for name in ("user", "item", "cate")}
    out = []
    for user, item, cate, hist_item, hist_cate, dense in inputs_of(batch):
        query = np.concatenate([table["item"][item], table["cate"][cate]])
        keys = np.concatenate([table["item"][hist_item], table["cate"][hist_cate]], axis=1)
        scores = deepctr_local_activation(query, keys, state, "attention.local_att", "dice", 2)
        hist = (scores[:, None] * keys).sum(0) if len(keys) else np.zeros(2 * D)
        x = np.concatenate([table["user"][user], query, hist, dense])
        x = deepctr_dnn(x, state, "dnn", 2, "relu")
        out.append(sigmoid(x @ state["dnn_linear.weight"][0] + state["out.bias"][0]))
    return np.asarray(out)


def deepctr_gru(xs, state, prefix, suffix, scores=None):
    """nn.GRU (scores None: h = (1 - z) n + z h) or deepctr's AUGRUCell (u' = a u)."""
    w_ih, w_hh = state[f"{prefix}.weight_ih{suffix}"], state[f"{prefix}.weight_hh{suffix}"]
    b_ih, b_hh = state[f"{prefix}.bias_ih{suffix}"], state[f"{prefix}.bias_hh{suffix}"]
    h = np.zeros(w_hh.shape[1])
    states = []
    for t, x in enumerate(xs):
        i_r, i_z, i_n = np.split(w_ih @ x + b_ih, 3)
        h_r, h_z, h_n = np.split(w_hh @ h + b_hh, 3)
        r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
        n = np.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h if scores is None else (1 - scores[t] * z) * h + scores[t] * z * n
        states.append(h)
    return np.asarray(states)


def deepctr_dien_probabilities(state, batch):
    table = {name: state[f"embedding_dict.{name}.weight"] for name in ("user", "item", "cate")}
    out = []
    for user, item, cate, hist_item, hist_cate, dense in inputs_of(batch):
        query = np.concatenate([table["item"][item], table["cate"][cate]])
        final = np.zeros(2 * D)
        if len(hist_item):
            keys = np.concatenate([table["item"][hist_item], table["cate"][hist_cate]], axis=1)
            interests = deepctr_gru(keys, state, "interest_extractor.gru", "_l0")
            scores = deepctr_local_activation(
                query, interests, state, "interest_evolution.attention.local_att", "relu", 2
            )
            attention = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
            evolved = deepctr_gru(
                interests, state, "interest_evolution.interest_evolution.rnn", "", attention
            )
            final = evolved[-1]
        x = np.concatenate([final, table["user"][user], query, dense])  # interest first
        x = deepctr_dnn(x, state, "dnn", 2, "relu")
        out.append(sigmoid(x @ state["linear.weight"][0] + state["out.bias"][0]))
    return np.asarray(out)


def recjax_probabilities(model, batch):
    return np.asarray(jax.nn.sigmoid(jax.jit(lambda m, b: m(b))(model, batch)["click"]))


# --- hand-built state dicts ---------------------------------------------------------------------


def test_din_state_dict_keys_are_deepctrs():
    shapes = din_shapes(DIN_CONFIG)
    assert shapes["attention.local_att.dnn.linears.0.weight"] == (8, 4 * 2 * D)
    assert shapes["attention.local_att.dnn.activation_layers.1.alpha"] == (6, 1)
    assert shapes["attention.local_att.dense.weight"] == (1, 6)
    assert shapes["dnn.linears.0.weight"] == (12, D + 2 * D + 2 * D + 1)
    assert shapes["dnn_linear.weight"] == (1, 10) and shapes["out.bias"] == (1,)
    assert shapes["embedding_dict.item.weight"] == (23, D)
    assert not any(key.startswith("dnn.activation_layers") for key in shapes)  # relu


def test_an_imported_din_computes_deepctrs_forward():
    state = random_state_dict(din_shapes(DIN_CONFIG), seed=0)
    model = import_din_state_dict(DIN_CONFIG, state)
    batch = reference.batch_with_lengths(DIN_CONFIG, LENGTHS, seed=1)
    expected = deepctr_din_probabilities(state, batch)
    assert np.ptp(expected) > 0.05
    np.testing.assert_allclose(recjax_probabilities(model, batch), expected, rtol=1e-5, atol=1e-6)


def test_an_imported_dien_computes_deepctrs_forward():
    state = random_state_dict(dien_shapes(DIEN_CONFIG), seed=2)
    assert state["interest_extractor.gru.weight_ih_l0"].shape == (3 * 2 * D, 2 * D)
    assert "interest_extractor.auxiliary_net.linears.2.weight" in state
    model = import_dien_state_dict(DIEN_CONFIG, state)
    batch = reference.batch_with_lengths(DIEN_CONFIG, LENGTHS, seed=3)
    expected = deepctr_dien_probabilities(state, batch)
    assert np.ptp(expected) > 0.05
    np.testing.assert_allclose(recjax_probabilities(model, batch), expected, rtol=1e-5, atol=1e-6)


def test_mismatches_are_named():
    state = random_state_dict(din_shapes(DIN_CONFIG), seed=4)
    missing = {k: v for k, v in state.items() if k != "dnn_linear.weight"}
    with pytest.raises(StateDictMismatchError, match=r"lacks 1 key.*'dnn_linear.weight'"):
        import_din_state_dict(DIN_CONFIG, missing)
    wrong = dict(state, **{"dnn.linears.1.weight": np.zeros((10, 13), np.float32)})
    with pytest.raises(
        StateDictMismatchError, match=r"'dnn.linears.1.weight' has shape \[10, 13\]"
    ):
        import_din_state_dict(DIN_CONFIG, wrong)
    plain = dataclasses.replace(DIN_CONFIG, dice_affine=False)
    with pytest.raises(StateDictMismatchError, match=r"trained scale or shift.*dice_affine=True"):
        import_din_state_dict(plain, state)
    untrained = dict(state)
    for key in state:
        if key.endswith("bn.weight") or key.endswith("bn.bias"):
            untrained[key] = np.full_like(state[key], 1.0 if key.endswith("weight") else 0.0)
    model = import_din_state_dict(plain, untrained)
    assert model.attention.mlp.activations[0].normalize.scale is None
    dien_state = random_state_dict(dien_shapes(DIEN_CONFIG), seed=5)
    no_aux = dataclasses.replace(DIEN_CONFIG, auxiliary_loss="inner_product")
    with pytest.raises(StateDictMismatchError, match=r"use auxiliary_loss='mlp'"):
        import_dien_state_dict(no_aux, dien_state)
    with pytest.raises(ValueError, match=r"attention='mlp' and gru_hidden=8"):
        import_dien_state_dict(dataclasses.replace(DIEN_CONFIG, attention="bilinear"), dien_state)


# --- the real deepctr-torch modules, where installed ----------------------------------------------


def import_deepctr(monkeypatch):
    """deepctr_torch, or skip. Its package imports sklearn.metrics, tqdm and requests for training
    and a version check only; where those are absent, empty stand-ins take their place (the
    version check then fails quietly, with no network access)."""
    pytest.importorskip("torch", reason="torch is an optional extra")
    if importlib.util.find_spec("deepctr_torch") is None:
        pytest.skip("deepctr-torch is not installed: pip install deepctr-torch==0.3.0 --no-deps")
    stand_ins = {
        "sklearn": {},
        "sklearn.metrics": dict.fromkeys(
            ("accuracy_score", "log_loss", "mean_squared_error", "roc_auc_score")
        ),
        "tqdm": {"tqdm": None},
        "requests": {"get": _offline},
    }
    for name, attributes in stand_ins.items():
        try:
            importlib.import_module(name)
        except ImportError:
            module = types.ModuleType(name)
            module.__dict__.update(attributes)
            monkeypatch.setitem(sys.modules, name, module)
    return importlib.import_module("deepctr_torch")


def _offline(*args, **kwargs):
    raise ConnectionError("no network in tests")


def deepctr_columns(monkeypatch, negatives: bool):
    import_deepctr(monkeypatch)
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat

    def sequence(name, embedding):
        rows = 23 if embedding == "item" else 7
        feature = SparseFeat(name, rows, D, embedding_name=embedding)
        return VarLenSparseFeat(feature, S, length_name="seq_length")

    columns = [
        SparseFeat("user", 11, D),
        SparseFeat("item", 23, D),
        SparseFeat("cate", 7, D),
        sequence("hist_item", "item"),
        sequence("hist_cate", "cate"),
        DenseFeat("price", 1),
    ]
    if negatives:
        columns += [sequence("neg_hist_item", "item"), sequence("neg_hist_cate", "cate")]
    return columns


def deepctr_inputs(model, batch, negatives=None):
    """deepctr-torch's one input tensor X: every column of model.feature_index, as floats."""
    torch = importlib.import_module("torch")
    lengths = np.asarray(batch.lengths_of("hist_item"))
    values = {name: np.asarray(batch.ids_of(name), np.float32) for name in batch.layout.names}
    values["seq_length"] = lengths[:, None].astype(np.float32)
    values["price"] = np.asarray(batch.dense)
    for name, ids in (negatives or {}).items():
        values["neg_" + name] = ids.astype(np.float32)
    columns = [values[name] for name in model.feature_index]
    return torch.from_numpy(np.concatenate(columns, axis=1))


def test_the_real_deepctr_din_gives_recjaxs_outputs(monkeypatch):
    columns = deepctr_columns(monkeypatch, negatives=False)
    torch = importlib.import_module("torch")
    from deepctr_torch.models import DIN

    module = DIN(
        columns,
        ["item", "cate"],
        att_hidden_size=(8, 6),
        att_activation="Dice",
        dnn_hidden_units=(12, 10),
        dnn_activation="relu",
    ).eval()
    state = random_state_dict(din_shapes(DIN_CONFIG), seed=6)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    batch = reference.batch_with_lengths(DIN_CONFIG, LENGTHS, seed=7)
    with torch.no_grad():
        expected = module(deepctr_inputs(module, batch))[:, 0].numpy()
    model = import_din_state_dict(DIN_CONFIG, module.state_dict())
    np.testing.assert_allclose(recjax_probabilities(model, batch), expected, rtol=1e-5, atol=1e-6)


def test_the_real_deepctr_dien_gives_recjaxs_outputs_and_auxiliary_loss(monkeypatch):
    columns = deepctr_columns(monkeypatch, negatives=True)
    torch = importlib.import_module("torch")
    from deepctr_torch.models import DIEN

    module = DIEN(
        columns,
        ["item", "cate"],
        gru_type="AUGRU",
        use_negsampling=True,
        att_hidden_units=(8, 6),
        att_activation="relu",
        dnn_hidden_units=(12, 10),
    ).eval()
    state = random_state_dict(dien_shapes(DIEN_CONFIG), seed=8)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    loaded = module.state_dict()
    rnn = "interest_evolution.interest_evolution.rnn"
    # deepctr-torch's AUGRUCell registers bias_hh under the name bias_ih too: one tensor.
    assert torch.equal(loaded[f"{rnn}.bias_ih"], loaded[f"{rnn}.bias_hh"])
    # Its DIEN drops empty sequences and fails on a batch holding only empty ones; give it none.
    lengths = [1, 3, 6, 2, 5]
    batch = reference.batch_with_lengths(DIEN_CONFIG, lengths, seed=9)
    negatives = sample_negatives(DIEN_CONFIG, batch, seed=10)
    inputs = deepctr_inputs(module, batch, negatives)
    with torch.no_grad():
        expected = module(inputs)[:, 0].numpy()
        query, keys, negative_keys, keys_length = module._get_emb(inputs)
        _, deepctr_aux = module.interest_extractor(keys, keys_length, negative_keys)
    model = import_dien_state_dict(DIEN_CONFIG, loaded)
    np.testing.assert_allclose(recjax_probabilities(model, batch), expected, rtol=1e-5, atol=1e-6)
    # deepctr-torch averages its binary cross-entropy over the 2 x (valid pairs) terms; recjax
    # sums over pairs and divides by the batch size (the paper's normalization).
    pairs = sum(max(n - 1, 0) for n in lengths)
    recjax_aux = float(model.auxiliary_loss(batch, negatives))
    np.testing.assert_allclose(recjax_aux, float(deepctr_aux) * 2 * pairs / len(lengths), rtol=1e-5)
