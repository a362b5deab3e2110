"""A whole model with its sparse arch sharded: built shard by shard, fed slice by slice.

Any family works through the contract: the model's `sparse_arch` (an `EmbeddingCollection`) is
replaced by a `ShardedEmbeddingCollection` over the mesh, and every other parameter (the dense
arch, interaction, over arch) is replicated on every device. Under `jax.jit` the lookups run as
explicit `shard_map` programs and the dense layers run data-parallel on each device's samples,
partitioned by XLA (they need no communication: their weights are replicated and their rows are
the device's own).

Nothing builds a whole table: the dense parameters come from building the family's module with
one-row tables (the families draw the same dense parameters whatever the tables' sizes; the
equality tests check it), and each process fills only its own devices' shards
(`recjax.parallel.table_init`).

Inputs: the global batch of B samples is the concatenation, in mesh order, of every device's
slice of b = B / P samples, slice d drawn with seed `slice_seed(seed, d)`; each process makes
only its own devices' slices (`global_batch`), and `host_batch` makes the whole batch on one
host, for the unsharded model to compare with.
"""

import dataclasses
import time

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from recjax.inputs.features import Features
from recjax.inputs.synthetic import abstract_features, synthetic_features
from recjax.models.family import ModelConfig
from recjax.parallel.sharded_collection import (
    DEVICE_AXES,
    ShardedEmbeddingCollection,
    process_devices,
)
from recjax.parallel.sharding import ShardingPlan
from recjax.parallel.table_init import load_full_tables, table_rows
from recjax.runtime.inference import Predictions, make_predict_fn


def _one_row_tables(config: ModelConfig) -> ModelConfig:
    return dataclasses.replace(
        config,
        tables=tuple(dataclasses.replace(table, num_rows=1) for table in config.tables),
    )


def _replicated(mesh: Mesh, value: jax.Array) -> jax.Array:
    host = np.asarray(value)
    return jax.make_array_from_callback(
        host.shape, NamedSharding(mesh, P()), lambda index: host[index]
    )


def shard_model(
    config: ModelConfig,
    plan: ShardingPlan,
    mesh: Mesh,
    seed: int,
    budget_bytes: int | None = None,
) -> nnx.Module:
    """`config`'s model with its tables sharded by `plan` over `mesh` (this process builds its
    own shards only, refusing beyond `budget_bytes`) and everything else replicated."""
    model = _one_row_tables(config).build(nnx.Rngs(seed))
    model.config = config
    model.sparse_arch = ShardedEmbeddingCollection(
        config.tables,
        config.features,
        plan,
        mesh,
        lowering=config.embedding_lowering,
        shard_values=lambda index, table, rows, columns: table_rows(
            seed, index, table, rows, columns
        ),
        budget_bytes=budget_bytes,
    )

    def place(value: jax.Array) -> jax.Array:
        sharding = getattr(value, "sharding", None)
        if isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
            return value  # a table buffer, already sharded over the mesh
        return _replicated(mesh, value)

    nnx.update(model, jax.tree.map(place, nnx.state(model)))
    return model


def reference_model(config: ModelConfig, seed: int) -> nnx.Module:
    """The unsharded model that `shard_model(config, ..., seed)` equals: same dense parameters,
    the same table values, whole."""
    return load_full_tables(config.build(nnx.Rngs(seed)), seed)


# --- inputs ------------------------------------------------------------------------------------


def slice_seed(seed: int, device: int) -> int:
    """The seed of device `device`'s slice of every batch."""
    return seed * 1_000_003 + device


def _concatenate(slices: list[Features]) -> Features:
    def join(*parts):
        return None if parts[0] is None else np.concatenate(parts, axis=0)

    first = slices[0]
    return Features(
        dense=join(*[s.dense for s in slices]),
        ids=join(*[s.ids for s in slices]),
        lengths=join(*[s.lengths for s in slices]),
        weights=join(*[s.weights for s in slices]),
        labels=None,
        layout=first.layout,
    )


def _check_divisible(batch_size: int, num_devices: int) -> int:
    if batch_size <= 0 or batch_size % num_devices:
        raise ValueError(
            f"A sharded batch is split evenly over {num_devices} devices; batch size {batch_size} "
            f"must be a positive multiple of {num_devices}."
        )
    return batch_size // num_devices


def host_batch(config: ModelConfig, batch_size: int, seed: int, num_devices: int) -> Features:
    """The whole global batch on this host (every device's slice, in mesh order)."""
    per_device = _check_divisible(batch_size, num_devices)
    return _concatenate(
        [
            synthetic_features(config, per_device, slice_seed(seed, device))
            for device in range(num_devices)
        ]
    )


def global_batch(config: ModelConfig, batch_size: int, seed: int, mesh: Mesh) -> Features:
    """The global batch as arrays sharded over `mesh` by samples; this process makes and sends
    only its own devices' slices."""
    num_devices = mesh.devices.size
    per_device = _check_divisible(batch_size, num_devices)
    mine = {
        d: synthetic_features(config, per_device, slice_seed(seed, d))
        for d in process_devices(mesh)
    }
    sharding = NamedSharding(mesh, P(DEVICE_AXES))

    def field(name: str):
        if getattr(next(iter(mine.values())), name) is None:
            return None
        width = getattr(next(iter(mine.values())), name).shape[1:]

        def block(index):
            device = (index[0].start or 0) // per_device
            return getattr(mine[device], name)[:, *index[1:]]

        return jax.make_array_from_callback((batch_size, *width), sharding, block)

    return Features(
        dense=field("dense"),
        ids=field("ids"),
        lengths=field("lengths"),
        weights=field("weights"),
        labels=None,
        layout=next(iter(mine.values())).layout,
    )


def abstract_global_batch(config: ModelConfig, batch_size: int, mesh: Mesh) -> Features:
    """Shapes, dtypes and shardings of a global batch, for compiling without data."""
    sharding = NamedSharding(mesh, P(DEVICE_AXES))
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        abstract_features(config, batch_size),
    )


# --- inference -----------------------------------------------------------------------------------


class ShardedPredictor:
    """The sharded model's predict function, compiled once per batch size; every process calls
    it with the same global batch (its own slices) in the same order.

    Example:
        >>> predictor = ShardedPredictor(shard_model(config, plan, mesh, seed=0), mesh)
        >>> predictor.compile(64)
        >>> predictor(global_batch(config, 64, seed=1, mesh))["click"]  # [64], sharded
    """

    def __init__(self, model: nnx.Module, mesh: Mesh):
        self.config = model.config
        self.mesh = mesh
        graphdef, self.params = nnx.split(model)
        self._jitted = jax.jit(make_predict_fn(graphdef))
        self._executables: dict[int, jax.stages.Compiled] = {}
        self.compile_seconds: dict[int, float] = {}

    def compile(self, batch_size: int) -> float:
        if batch_size not in self._executables:
            start = time.perf_counter()
            abstract = abstract_global_batch(self.config, batch_size, self.mesh)
            self._executables[batch_size] = self._jitted.lower(self.params, abstract).compile()
            self.compile_seconds[batch_size] = time.perf_counter() - start
        return self.compile_seconds[batch_size]

    def hlo_text(self, batch_size: int) -> str:
        return self._executables[batch_size].as_text()

    def __call__(self, batch: Features) -> tuple[Predictions, jax.Array]:
        """({head: [B] probabilities, sharded by samples}, inputs valid [])."""
        return self._executables[batch.ids.shape[0]](self.params, batch)


def gather_to_host(predictions: Predictions) -> dict[str, np.ndarray]:
    """Every process gets the whole [B] predictions (a collective: all processes must call)."""
    from jax.experimental import multihost_utils

    return {
        head: np.asarray(multihost_utils.process_allgather(value, tiled=True))
        for head, value in predictions.items()
    }
