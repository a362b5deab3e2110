"""NumPy building blocks for the families' independent reference forward passes (float64)."""

import jax
import numpy as np
from flax import nnx


def table(model, name: str) -> np.ndarray:
    """[rows, D] float64: table `name`'s rows, cut out of its group's stacked buffer."""
    embeddings = model.sparse_arch
    stacked = np.asarray(embeddings.tables[embeddings.table_group[name]][...], np.float64)
    first = embeddings.table_offset[name]
    return stacked[first : first + embeddings.table_rows[name]]


def pool(model, batch, feature, table_name: str) -> np.ndarray:
    """[B, D] the feature's bag in `table_name`: masked past its length, weighted, summed or
    averaged, written sample by sample."""
    rows = table(model, table_name)
    ids = np.asarray(batch.ids_of(feature.name))
    lengths = np.asarray(batch.lengths_of(feature.name))
    index = batch.layout.index(feature.name)
    column = batch.layout.columns[index]
    weights = None
    if feature.weighted:
        weights = np.asarray(batch.weights)[:, column : column + feature.capacity]
    out = np.zeros((ids.shape[0], rows.shape[1]))
    for sample in range(ids.shape[0]):
        for position in range(lengths[sample]):
            scale = 1.0 if weights is None else weights[sample, position]
            out[sample] += scale * rows[ids[sample, position]]
        if feature.pooling == "mean" and lengths[sample] > 0:
            out[sample] /= lengths[sample]
    return out


def linear(x: np.ndarray, layer: nnx.Linear) -> np.ndarray:
    y = x @ np.asarray(layer.kernel[...], np.float64)
    if layer.bias is not None:
        y = y + np.asarray(layer.bias[...], np.float64)
    return y


def mlp(x: np.ndarray, module, relu_last: bool) -> np.ndarray:
    """The layers of a recjax MLP, ReLU between them (and after the last with relu_last)."""
    for index, layer in enumerate(module.layers):
        x = linear(x, layer)
        if index < len(module.layers) - 1 or relu_last:
            x = np.maximum(x, 0.0)
    return x


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def randomize_biases(model, seed: int) -> None:
    """Every bias set to normal(0, 0.1) values, so that a test sees a bias used twice or not at
    all (recjax initializes biases to zero)."""
    key = jax.random.key(seed)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.Linear) and module.bias is not None:
            key, subkey = jax.random.split(key)
            module.bias[...] = 0.1 * jax.random.normal(subkey, module.bias.shape)
