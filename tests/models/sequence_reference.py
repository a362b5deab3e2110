"""Independent NumPy references of DIN and DIEN, written from the papers' equations.

Everything runs one sample and one position at a time in float64, with explicit loops over the
valid positions only (so padding cannot leak in), reading the parameters by their paths in the
model's state.
"""

import numpy as np
from flax import nnx


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def parameters(model) -> dict[tuple, np.ndarray]:
    """{path: float64 array} of every variable of the model (parameters and statistics)."""
    return {
        path: np.asarray(variable.get_value(), np.float64)
        for path, variable in nnx.to_flat_state(nnx.state(model))
    }


def randomize(model, seed: int, table_scale: float = 0.5, weight_scale: float = 0.3):
    """Gives every parameter and statistic of `model` random values in place, so that no term is
    trivially zero or one: tables N(0, table_scale), weights N(0, weight_scale), Dice and PReLU
    slopes in [-0.5, 0.5], running means N(0, 0.5), running variances in [0.5, 2]."""
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(model)
    flat = []
    for path, variable in nnx.to_flat_state(state):
        value = np.asarray(variable.get_value())
        if path[-1] == "var":
            new = rng.uniform(0.5, 2.0, value.shape)
        elif path[-1] == "mean":
            new = rng.normal(0.0, 0.5, value.shape)
        elif path[-1] == "alpha":
            new = rng.uniform(-0.5, 0.5, value.shape)
        elif path[-1] == "scale":
            new = rng.uniform(0.5, 1.5, value.shape)
        elif path[:2] == ("sparse_arch", "tables"):
            new = rng.normal(0.0, table_scale, value.shape)
        else:
            new = rng.normal(0.0, weight_scale, value.shape)
        flat.append((path, variable.replace(new.astype(value.dtype))))
    nnx.update(model, nnx.from_flat_state(flat))
    return model


# --- activations and feed-forward stacks ----------------------------------------------------------


def dice(x, p, prefix, epsilon):
    """The paper's Dice with the moving averages (inference); scale and bias if present."""
    mean, var = p[(*prefix, "normalize", "mean")], p[(*prefix, "normalize", "var")]
    normalized = (x - mean) / np.sqrt(var + epsilon)
    if (*prefix, "normalize", "scale") in p:
        normalized = normalized * p[(*prefix, "normalize", "scale")]
        normalized = normalized + p[(*prefix, "normalize", "bias")]
    probability = sigmoid(normalized)
    return probability * x + (1.0 - probability) * p[(*prefix, "alpha")] * x


def activate(name, x, p, prefix, epsilon):
    if name == "dice":
        return dice(x, p, prefix, epsilon)
    if name == "prelu":
        return np.where(x > 0, x, p[(*prefix, "alpha")] * x)
    if name == "relu":
        return np.maximum(x, 0.0)
    return sigmoid(x)


def feed_forward(x, p, prefix, activation, epsilon):
    """Linear layers with `activation` between them (none after the last)."""
    count = len(
        {path[len(prefix) + 1] for path in p if path[: len(prefix) + 1] == (*prefix, "layers")}
    )
    for index in range(count):
        x = x @ p[(*prefix, "layers", index, "kernel")] + p[(*prefix, "layers", index, "bias")]
        if index < count - 1:
            x = activate(activation, x, p, (*prefix, "activations", index), epsilon)
    return x


# --- inputs -----------------------------------------------------------------------------------


def embeddings(model, batch):
    """Per sample: (pooled [W], candidate [E], behaviours [length, E]) from the table buffers."""
    config, sparse_arch = model.config, model.sparse_arch
    p = parameters(model)
    ids, lengths = np.asarray(batch.ids), np.asarray(batch.lengths)

    def rows(feature, sample):
        table = config.table(feature.table)
        buffer = p[("sparse_arch", "tables", sparse_arch.table_group[table.name])]
        column = batch.layout.columns[batch.layout.index(feature.name)]
        length = lengths[sample, batch.layout.index(feature.name)]
        first = sparse_arch.table_offset[table.name]
        return buffer[first + ids[sample, column : column + length]]  # [length, D]

    by_name = {feature.name: feature for feature in config.features}
    samples = []
    for sample in range(batch.batch_size):
        pooled = []
        for feature in config.features:
            if feature.name in config.behaviour_features:
                continue
            bag = rows(feature, sample)
            pooled.append(bag.mean(0) if feature.pooling == "mean" else bag.sum(0))
        candidate = np.concatenate([rows(by_name[n], sample)[0] for n in config.candidate_features])
        behaviours = np.concatenate(
            [rows(by_name[n], sample) for n in config.behaviour_features], axis=1
        )
        samples.append((np.concatenate(pooled), candidate, behaviours))
    return samples


def over_arch(model, pooled, interest, dense):
    config = model.config
    x = np.concatenate([pooled, interest, np.asarray(dense, np.float64)])
    return feed_forward(
        x, parameters(model), ("over_arch",), config.mlp_activation, config.dice_epsilon
    )[0]


# --- attention ------------------------------------------------------------------------------------


def activation_unit_scores(model_p, prefix, behaviours, candidate, activation, epsilon):
    """[length] scores: the feed-forward network over [h, c, h - c, h * c] at each position."""
    return np.asarray(
        [
            feed_forward(
                np.concatenate([h, candidate, h - candidate, h * candidate]),
                model_p,
                prefix,
                activation,
                epsilon,
            )[0]
            for h in behaviours
        ]
    )


def softmax(scores):
    if len(scores) == 0:
        return scores
    exponentials = np.exp(scores - scores.max())
    return exponentials / exponentials.sum()


# --- recurrences --------------------------------------------------------------------------------


def gru_step(h, x, p, prefix, score=None):
    """One step of the paper's GRU (eqs. 1-4) with recurrent biases; AUGRU when `score` is given
    (eq. 6: the update gate scaled by the score)."""
    hidden = h.shape[0]
    w_i, w_h = p[(*prefix, "input_kernel")], p[(*prefix, "hidden_kernel")]
    b_i, b_h = p[(*prefix, "input_bias")], p[(*prefix, "hidden_bias")]
    gate = {name: slice(k * hidden, (k + 1) * hidden) for k, name in enumerate("ruh")}
    r = sigmoid(x @ w_i[:, gate["r"]] + b_i[gate["r"]] + h @ w_h[:, gate["r"]] + b_h[gate["r"]])
    u = sigmoid(x @ w_i[:, gate["u"]] + b_i[gate["u"]] + h @ w_h[:, gate["u"]] + b_h[gate["u"]])
    candidate = np.tanh(
        x @ w_i[:, gate["h"]] + b_i[gate["h"]] + r * (h @ w_h[:, gate["h"]] + b_h[gate["h"]])
    )
    if score is not None:
        u = score * u
    return (1.0 - u) * h + u * candidate


def gru_sequence(xs, p, prefix, hidden, scores=None):
    """[length, H] states after each valid step (an AUGRU's when `scores` [length] is given)."""
    h = np.zeros(hidden)
    states = []
    for t, x in enumerate(xs):
        h = gru_step(h, x, p, prefix, None if scores is None else scores[t])
        states.append(h)
    return np.asarray(states).reshape(len(xs), hidden)


# --- whole models -------------------------------------------------------------------------------


def din_logits(model, batch) -> np.ndarray:
    config = model.config
    p = parameters(model)
    dense = np.asarray(batch.dense)
    logits = []
    for sample, (pooled, candidate, behaviours) in enumerate(embeddings(model, batch)):
        scores = activation_unit_scores(
            p,
            ("attention", "mlp"),
            behaviours,
            candidate,
            config.attention_activation,
            config.dice_epsilon,
        )
        weights = softmax(scores) if config.attention_softmax else scores
        interest = (weights[:, None] * behaviours).sum(0) if len(behaviours) else candidate * 0
        logits.append(over_arch(model, pooled, interest, dense[sample]))
    return np.asarray(logits)


def dien_attention(model, p, states, candidate):
    config = model.config
    if config.attention == "bilinear":
        scores = np.asarray([h @ p[("attention", "kernel")] @ candidate for h in states])
    else:
        scores = activation_unit_scores(
            p,
            ("attention", "mlp"),
            states,
            candidate,
            config.attention_activation,
            config.dice_epsilon,
        )
    return softmax(scores)


def dien_logits(model, batch) -> np.ndarray:
    config = model.config
    p = parameters(model)
    dense = np.asarray(batch.dense)
    hidden = config.gru_hidden
    logits = []
    for sample, (pooled, candidate, behaviours) in enumerate(embeddings(model, batch)):
        states = gru_sequence(behaviours, p, ("interest_extractor",), hidden)
        attention = dien_attention(model, p, states, candidate)
        evolved = gru_sequence(states, p, ("interest_evolution",), hidden, attention)
        final = evolved[-1] if len(evolved) else np.zeros(hidden)
        logits.append(over_arch(model, pooled, final, dense[sample]))
    return np.asarray(logits)


def dien_auxiliary_loss(model, batch, negatives) -> float:
    """The paper's eq. 7 with the inner product (or the auxiliary MLP), summed over valid pairs
    (t, t + 1) and divided by the batch size."""
    config = model.config
    p = parameters(model)
    sparse_arch = model.sparse_arch
    lengths = np.asarray(batch.lengths_of(config.behaviour_features[0]))
    total = 0.0

    def logit(h, e):
        if config.auxiliary_loss == "inner_product":
            return h @ e
        return feed_forward(np.concatenate([h, e]), p, ("auxiliary_net",), "sigmoid", 0.0)[0]

    for sample, (_, _, behaviours) in enumerate(embeddings(model, batch)):
        states = gru_sequence(behaviours, p, ("interest_extractor",), config.gru_hidden)
        unclicked = []
        for name in config.behaviour_features:
            table = config.table(next(f.table for f in config.features if f.name == name))
            buffer = p[("sparse_arch", "tables", sparse_arch.table_group[table.name])]
            first = sparse_arch.table_offset[table.name]
            unclicked.append(buffer[first + np.asarray(negatives[name])[sample, : lengths[sample]]])
        unclicked = np.concatenate(unclicked, axis=1)
        for t in range(lengths[sample] - 1):
            total -= np.log(sigmoid(logit(states[t], behaviours[t + 1])))
            total -= np.log(1.0 - sigmoid(logit(states[t], unclicked[t + 1])))
    return total / batch.batch_size


def batch_with_lengths(config, lengths, seed: int):
    """A synthetic batch of `config` whose behaviour sequences have the given lengths (0 allowed),
    random ids at the valid positions and id 0 past them."""
    from recjax.inputs.synthetic import synthetic_features

    lengths = np.asarray(lengths, np.int32)
    batch = synthetic_features(config, len(lengths), seed=seed)
    ids, all_lengths = np.array(batch.ids), np.array(batch.lengths)
    positions = np.arange(config.sequence_length)[None, :]
    rng = np.random.default_rng(seed + 1)
    for name in config.behaviour_features:
        index = batch.layout.index(name)
        column = batch.layout.columns[index]
        rows = config.table(next(f.table for f in config.features if f.name == name)).num_rows
        drawn = rng.integers(0, rows, size=(len(lengths), config.sequence_length))
        block = np.where(positions < lengths[:, None], drawn, 0)
        ids[:, column : column + config.sequence_length] = block
        all_lengths[:, index] = lengths
    return type(batch)(batch.dense, ids, all_lengths, batch.weights, batch.labels, batch.layout)
