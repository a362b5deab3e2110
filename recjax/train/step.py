"""The train step of any model family: dense parameters by optax, tables by sparse row updates.

    program = TrainProgram(model, optax.adam(1e-3), rowwise_adagrad(0.05))
    state = program.init(model)                 # the model's arrays now belong to `state`
    state, metrics = program.step(state, batch)  # donates `state`: tables updated in place
    probabilities = program.predict(state, batch)
    trained = program.model(state)              # an nnx module holding the state's parameters

One step (see `sparse_embeddings` for why it is shaped this way):

  1. lookups = model.sparse_arch(batch), outside the differentiated function, by the model's own
     lowering (the native kernel included: it needs no backward pass here);
  2. loss, (d loss / d dense parameters, d loss / d lookups) by `jax.value_and_grad` of the
     model with `GivenLookups` in place of its sparse arch; the loss is the sum over heads of
     the mean binary cross-entropy of each head's logits;
  3. dense parameters: the optax optimizer's update;
  4. tables: `lookup_gradients` -> the `EmbeddingOptimizer`, which writes only the looked-up
     rows of the donated buffers.

The state is one pytree (`TrainState`); the model's other state (RNG counters of dropout, batch
statistics) is threaded through the step. The model runs in training mode (`model.train()`)
inside the step and in evaluation mode (`model.eval()`) in `predict`.

Shapes: `B` batch, `N` rows of a stacked group buffer, `D` embedding dim.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from recjax.inputs.features import Features
from recjax.models.family import ModelConfig
from recjax.train.embedding_optimizers import EmbeddingOptimizer
from recjax.train.sparse_embeddings import GivenLookups, lookup_gradients, split_model

Metrics = dict[str, jax.Array]
TRAINABLE_DTYPES = ("float32",)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a step reads and writes (a pytree).

    Attributes:
      step: int32 scalar, steps taken.
      tables: {group: [N, D]} the stacked embedding tables.
      dense: nnx.State of every other parameter.
      rest: nnx.State of the model's other variables (RNG counters, batch statistics).
      dense_optimizer: the optax optimizer's state.
      embedding_optimizer: the `EmbeddingOptimizer`'s state.
    """

    step: jax.Array
    tables: dict[str, jax.Array]
    dense: Any
    rest: Any
    dense_optimizer: Any
    embedding_optimizer: Any


def binary_cross_entropy(
    logits: dict[str, jax.Array], labels: dict[str, jax.Array]
) -> tuple[jax.Array, Metrics]:
    """(sum over heads of the mean log loss, {"loss/<head>": mean log loss})."""
    missing = sorted(set(logits) - set(labels or {}))
    if missing:
        raise ValueError(f"The batch has no labels for head(s) {missing}.")
    per_head = {
        f"loss/{head}": optax.sigmoid_binary_cross_entropy(
            value, labels[head].astype(value.dtype)
        ).mean()
        for head, value in logits.items()
    }
    return sum(per_head.values()), per_head


class TrainProgram:
    """The jitted train step and predict function of one model (see the module docstring).

    Args:
      model: a model of any registered family; its arrays go into the state made by `init`.
      dense_optimizer: an optax optimizer for every parameter but the tables.
      embedding_optimizer: the tables' `EmbeddingOptimizer`.
    """

    def __init__(
        self,
        model: nnx.Module,
        dense_optimizer: optax.GradientTransformation,
        embedding_optimizer: EmbeddingOptimizer,
    ):
        self.config: ModelConfig = model.config
        not_float = [t.name for t in self.config.tables if t.dtype not in TRAINABLE_DTYPES]
        if not_float:
            raise ValueError(
                f"{self.config.name}: training updates tables of dtype {TRAINABLE_DTYPES}; "
                f"table(s) {not_float} are not (train in float32, then quantize)."
            )
        self.dense_optimizer = dense_optimizer
        self.embedding_optimizer = embedding_optimizer
        model.eval()
        self.eval_graphdef = nnx.graphdef(model)
        model.train()
        self.graphdef, tables, _, _ = split_model(model)
        model.eval()
        self._table_paths = [path for path, _ in nnx.to_flat_state(tables)]
        self._table_of_feature = {feature.name: feature.table for feature in self.config.features}
        self.step = jax.jit(self._step, donate_argnums=0)
        self.predict = jax.jit(self._predict)

    def init(self, model: nnx.Module) -> TrainState:
        """The initial state, holding `model`'s arrays (not copied: the first step donates them)."""
        _, tables, dense, rest = split_model(model)
        buffers = self._buffers(tables)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            tables=buffers,
            dense=dense,
            rest=rest,
            dense_optimizer=self.dense_optimizer.init(dense),
            embedding_optimizer=self.embedding_optimizer.init(buffers),
        )

    def _buffers(self, tables: nnx.State) -> dict[str, jax.Array]:
        return {path[-1]: variable.get_value() for path, variable in nnx.to_flat_state(tables)}

    def _tables_state(self, buffers: dict[str, jax.Array]) -> nnx.State:
        return nnx.from_flat_state(
            [(path, nnx.Param(buffers[path[-1]])) for path in self._table_paths]
        )

    def model(self, state: TrainState) -> nnx.Module:
        """The model in evaluation mode, holding the state's parameters (not copied)."""
        return nnx.merge(
            self.eval_graphdef, self._tables_state(state.tables), state.dense, state.rest
        )

    def _step(self, state: TrainState, batch: Features) -> tuple[TrainState, Metrics]:
        tables = self._tables_state(state.tables)
        sparse_arch = nnx.merge(self.graphdef, tables, state.dense, state.rest).sparse_arch
        lookups = sparse_arch(batch)
        inputs = batch.without_labels()

        def loss_fn(dense, lookups, rest):
            # copy=True: fresh variables of this trace, which the model may update (dropout's
            # RNG counter); the arrays are not copied.
            model = nnx.merge(self.graphdef, tables, dense, rest, copy=True)
            own_sparse_arch = model.sparse_arch
            model.sparse_arch = GivenLookups(lookups, own_sparse_arch.layout)
            logits = model(inputs)
            model.sparse_arch = own_sparse_arch
            loss, per_head = binary_cross_entropy(logits, batch.labels)
            return loss, (per_head, nnx.state(model, nnx.Not(nnx.Param)))

        (loss, (per_head, rest)), (dense_grads, lookup_grads) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True
        )(state.dense, lookups, state.rest)
        updates, dense_optimizer = self.dense_optimizer.update(
            dense_grads, state.dense_optimizer, state.dense
        )
        dense = optax.apply_updates(state.dense, updates)
        gradients = lookup_gradients(sparse_arch, self._table_of_feature, batch, lookup_grads)
        buffers, embedding_optimizer = self.embedding_optimizer.update(
            gradients, state.embedding_optimizer, state.tables
        )
        new_state = TrainState(
            step=state.step + 1,
            tables=buffers,
            dense=dense,
            rest=rest,
            dense_optimizer=dense_optimizer,
            embedding_optimizer=embedding_optimizer,
        )
        return new_state, {"loss": loss, **per_head}

    def _predict(self, state: TrainState, batch: Features) -> dict[str, jax.Array]:
        logits = self.model(state)(batch.without_labels())
        return {head: jax.nn.sigmoid(value) for head, value in logits.items()}
