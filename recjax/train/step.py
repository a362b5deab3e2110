"""The train step of any model family: dense parameters by optax, tables by sparse row updates.

    program = TrainProgram(model, optax.adam(1e-3), rowwise_adagrad(0.05))
    state = program.init(model)                 # the model's arrays now belong to `state`
    state, metrics = program.step(state, batch)  # donates `state`: tables updated in place
    probabilities = program.predict(state, batch)
    trained = program.model(state)              # an nnx module holding the state's parameters

One step (see `sparse_embeddings` for why it is shaped this way):

  1. the model's reads of its sparse arch (`program.reads`: `sparse_arch(batch)` and each
     `sparse_arch.pool_call(call, batch)` it makes, recorded when the program is built), computed
     outside the differentiated function by the model's own lowering (the native kernel
     included: it needs no backward pass here);
  2. loss, (d loss / d dense parameters, d loss / d those values) by `jax.value_and_grad` of the
     model with `GivenLookups` in place of its sparse arch; the loss is the sum over heads of
     the mean binary cross-entropy of each head's logits;
  3. dense parameters: the optax optimizer's update;
  4. tables: `lookup_gradients` -> the `EmbeddingOptimizer`, which writes only the looked-up
     rows of the donated buffers.

The state is one pytree (`TrainState`); the model's other state (RNG counters of dropout, batch
statistics) is threaded through the step. The model runs in training mode (`model.train()`)
inside the step and in evaluation mode (`model.eval()`) in `predict`. Inside the step its
recurrences (DIEN's GRU and AUGRU) loop by "scan" whatever their configured loop
(`recurrent.scan_recurrences`: the same function, and the only loop reverse mode differentiates);
`predict` keeps the configured loop (`scanned_recurrences` names those that differ).

Shapes: `B` batch, `N` rows of a stacked group buffer, `D` embedding dim.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from recjax.inputs.features import Features
from recjax.inputs.synthetic import abstract_features
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.layers.recurrent import scan_recurrences, while_loop_recurrences
from recjax.models.family import ModelConfig
from recjax.train.embedding_optimizers import EmbeddingOptimizer
from recjax.train.sparse_embeddings import (
    GivenLookups,
    RecordingSparseArch,
    SparseReads,
    lookup_gradients,
    read_values,
    split_model,
)

Metrics = dict[str, jax.Array]
TRAINABLE_DTYPES = ("float32",)


def check_trainable(config: ModelConfig) -> None:
    """Raises ValueError unless every table is of a dtype the step updates (float32): tables of
    lower precision (float16, bfloat16, int8, int4) are for inference."""
    not_float = [f"{t.name} ({t.dtype})" for t in config.tables if t.dtype not in TRAINABLE_DTYPES]
    if not_float:
        raise ValueError(
            f"{config.name}: training updates tables of dtype {TRAINABLE_DTYPES} only, not "
            f"{', '.join(not_float)}: train in float32, then quantize the trained model."
        )


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

    Attributes:
      reads: the model's reads of its sparse arch in the step (`SparseReads`).
      scanned_recurrences: the recurrences that the step runs by "scan" and `predict` by their
        configured "longest" loop (empty for a model without one).

    Raises ValueError, naming why, for a model the step cannot train: tables not float32, a model
    that reads its tables other than by `sparse_arch(batch)` and `sparse_arch.pool_call(call,
    batch)`, or one whose forward pass has no reverse-mode derivative. The step is traced once on
    abstract inputs when the program is built (nothing runs), so this fails here rather than at
    the first batch.
    """

    def __init__(
        self,
        model: nnx.Module,
        dense_optimizer: optax.GradientTransformation,
        embedding_optimizer: EmbeddingOptimizer,
    ):
        self.config: ModelConfig = model.config
        check_trainable(self.config)
        self.dense_optimizer = dense_optimizer
        self.embedding_optimizer = embedding_optimizer
        model.eval()
        self.eval_graphdef = nnx.graphdef(model)
        model.train()
        self.scanned_recurrences = while_loop_recurrences(model)
        self.graphdef, tables, _, _ = split_model(scan_recurrences(model))
        model.eval()
        self._table_paths = [path for path, _ in nnx.to_flat_state(tables)]
        self.step = jax.jit(self._step, donate_argnums=0)
        self.predict = jax.jit(self._predict)
        state = jax.eval_shape(lambda: self.init(model))
        batch = abstract_features(self.config, 2, labels=True)
        try:
            self.reads = self._record_reads(state, batch)
            jax.eval_shape(self._step, state, batch)
        except (AttributeError, ValueError, TypeError) as error:
            reason = str(error).split("\n")[0]
            raise ValueError(
                f"{self.config.name}: the sparse train step cannot train this model: {reason}"
            ) from error

    def _record_reads(self, state: TrainState, batch: Features) -> SparseReads:
        """The reads of its sparse arch the model makes in the step's forward pass, recorded by
        tracing that pass on abstract inputs (`jax.eval_shape`: nothing runs)."""
        recorders = []

        def record(sparse_arch):
            recorders.append(RecordingSparseArch(sparse_arch))
            return recorders[-1]

        jax.eval_shape(
            lambda state, inputs: self._forward(
                self._tables_state(state.tables), state.dense, state.rest, inputs, record
            ),
            state,
            batch.without_labels(),
        )
        return recorders[0].reads()

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

    def _forward(
        self,
        tables: nnx.State,
        dense: nnx.State,
        rest: nnx.State,
        inputs: Features,
        stand_in: Callable[[EmbeddingCollection], Any],
    ) -> tuple[dict[str, jax.Array], nnx.State]:
        """(logits, the model's other state after the pass) of the step's model (training mode,
        recurrences by scan) with `stand_in(sparse_arch)` in place of its sparse arch."""
        # copy=True: fresh variables of this trace, which the model may update (dropout's RNG
        # counter); the arrays are not copied.
        model = nnx.merge(self.graphdef, tables, dense, rest, copy=True)
        own_sparse_arch = model.sparse_arch
        model.sparse_arch = stand_in(own_sparse_arch)
        logits = model(inputs)
        model.sparse_arch = own_sparse_arch
        return logits, nnx.state(model, nnx.Not(nnx.Param))

    def _step(self, state: TrainState, batch: Features) -> tuple[TrainState, Metrics]:
        tables = self._tables_state(state.tables)
        sparse_arch = nnx.merge(self.graphdef, tables, state.dense, state.rest).sparse_arch
        values = read_values(sparse_arch, self.reads, batch)
        inputs = batch.without_labels()

        def loss_fn(dense, values, rest):
            logits, rest = self._forward(
                tables,
                dense,
                rest,
                inputs,
                lambda own: GivenLookups(values, self.reads, own.layout),
            )
            loss, per_head = binary_cross_entropy(logits, batch.labels)
            return loss, (per_head, rest)

        (loss, (per_head, rest)), (dense_grads, cotangents) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True
        )(state.dense, values, state.rest)
        updates, dense_optimizer = self.dense_optimizer.update(
            dense_grads, state.dense_optimizer, state.dense
        )
        dense = optax.apply_updates(state.dense, updates)
        gradients = lookup_gradients(sparse_arch, self.reads, batch, cotangents)
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
