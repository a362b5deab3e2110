"""Checkpoints of a training run with orbax: periodic, atomic, resumable, and checked on load.

A checkpoint is one orbax step folder `<directory>/<step>/` holding three items:

  model      the model's variables (tables, dense parameters, other state), by their nnx path,
             e.g. "sparse_arch/tables/d32_float32": what inference needs (`restore_model`);
  optimizer  the step count and both optimizers' states;
  meta       JSON: the config and family, the step, the data source's settings and the position
             just after the last batch trained on, the optimizer settings, and every array's key,
             shape and dtype.

Orbax writes a step into a temporary folder and renames it when complete, so an interrupted save
(Ctrl-C included) leaves the previous checkpoints as they were, and the temporary folder is
removed when the directory is next opened. The two newest checkpoints are kept.

Loading checks before reading any array: the family and the config (every field but the name
and the embedding lowering, which change no array) must match the model's, then every array's
key, shape and dtype; a mismatch raises `CheckpointMismatchError` naming the first difference.
"""

import dataclasses
import json
import os
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from recjax.models.family import ModelConfig, abstract_model
from recjax.models.registry import family_of
from recjax.runtime.model_setup import SMALL_PAGES_NOTE, back_tables_with_huge_pages
from recjax.train.sparse_embeddings import split_model
from recjax.train.step import TrainProgram, TrainState

ITEMS = ("model", "optimizer", "meta")
KEEP = 2
# Config fields that change no array: a checkpoint loads into a model that differs only in them.
IGNORED_CONFIG_FIELDS = ("name", "embedding_lowering")


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model (or the run) it is loaded into."""


def config_json(config: ModelConfig) -> dict:
    """The config as JSON values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _short(value) -> str:
    """A readable summary of a config value: tables and features by count and sizes."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = [key for key in ("num_rows", "dim", "capacity", "pooling") if key in value[0]]
        sizes = ", ".join(
            key + " " + "/".join(sorted({str(item[key]) for item in value})) for key in keys
        )
        return f"{len(value)} ({sizes})"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_config(meta: dict, config: ModelConfig, where: str) -> None:
    """Raises CheckpointMismatchError unless the checkpoint's family and config are `config`'s."""
    family = family_of(config)
    if meta["family"] != family:
        raise CheckpointMismatchError(
            f"{where} holds a {meta['family']!r} model ({meta['config']['name']}); this model "
            f"{config.name} is of the {family!r} family."
        )
    saved, current = meta["config"], config_json(config)
    differences = [
        f"{key}: checkpoint {_short(saved.get(key))}, model {_short(current.get(key))}"
        for key in sorted(set(saved) | set(current))
        if key not in IGNORED_CONFIG_FIELDS and saved.get(key) != current.get(key)
    ]
    if differences:
        raise CheckpointMismatchError(
            f"{where} holds {saved['name']}, which does not fit {config.name}; they differ in "
            + "; ".join(differences)
            + "."
        )


def _model_arrays(model: nnx.Module) -> dict[str, jax.Array]:
    return {
        "/".join(str(part) for part in path): variable.get_value()
        for path, variable in nnx.to_flat_state(nnx.state(model))
    }


def _optimizer_tree(state: TrainState) -> dict:
    return {
        "step": state.step,
        "dense_optimizer": state.dense_optimizer,
        "embedding_optimizer": state.embedding_optimizer,
    }


def _keys(arrays: dict[str, jax.Array]) -> list[list]:
    return [[key, list(value.shape), str(value.dtype)] for key, value in arrays.items()]


def _indexed(arrays: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Orbax item keys: plain numbers (the names, with their / [ ] ' characters, go in meta)."""
    return {f"{index:05d}": value for index, value in enumerate(arrays.values())}


def _check_keys(saved: list[list], expected: dict, what: str, where: str) -> None:
    saved_by_key = {key: (shape, dtype) for key, shape, dtype in saved}
    for key, value in expected.items():
        if key not in saved_by_key:
            raise CheckpointMismatchError(
                f"{where}: the {what} lacks {key!r} ({list(value.shape)} {value.dtype})."
            )
        shape, dtype = saved_by_key[key]
        if shape != list(value.shape) or dtype != str(value.dtype):
            raise CheckpointMismatchError(
                f"{where}: {what} {key!r} is {shape} {dtype}; this run needs "
                f"{list(value.shape)} {value.dtype}."
            )
    extra = [key for key in saved_by_key if key not in expected]
    if extra:
        raise CheckpointMismatchError(
            f"{where}: the {what} holds {len(extra)} array(s) this run does not have; the first "
            f"is {extra[0]!r}."
        )


def _abstract(arrays: dict[str, jax.Array]) -> dict[str, jax.ShapeDtypeStruct]:
    return {
        f"{index:05d}": jax.ShapeDtypeStruct(value.shape, value.dtype)
        for index, value in enumerate(arrays.values())
    }


def _manager(directory: str, read_only: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=KEEP,
        enable_async_checkpointing=False,
        create=not read_only,
        cleanup_tmp_directories=not read_only,
        read_only=read_only,
    )
    return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=ITEMS)


class TrainCheckpointer:
    """Saves and restores a `TrainProgram`'s state in `directory` (see the module docstring)."""

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)
        self._manager = _manager(self.directory)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, program: TrainProgram, state: TrainState, meta: dict) -> str:
        """Writes the checkpoint of `state` (blocking); `meta` adds the data and optimizer
        settings. Returns the step folder."""
        step = int(state.step)
        model_arrays = _model_arrays(program.model(state))
        optimizer_arrays = _flat_optimizer(state)
        full_meta = {
            **meta,
            "step": step,
            "family": family_of(program.config),
            "config": config_json(program.config),
            "model_keys": _keys(model_arrays),
            "optimizer_keys": _keys(optimizer_arrays),
        }
        self._manager.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(_indexed(model_arrays)),
                optimizer=ocp.args.StandardSave(_indexed(optimizer_arrays)),
                meta=ocp.args.JsonSave(full_meta),
            ),
            force=True,
        )
        self._manager.wait_until_finished()
        return os.path.join(self.directory, str(step))

    def read_meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        return self._manager.restore(
            step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
        ).meta

    def restore(
        self, program: TrainProgram, template: TrainState, step: int | None = None
    ) -> tuple[TrainState, dict]:
        """The state saved at `step` (default: the latest) and its meta.

        `template`: a state of this run (e.g. `jax.eval_shape` of `program.init`), for shapes.
        Raises CheckpointMismatchError (config, then arrays) before reading any array.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint in {self.directory}.")
        where = f"checkpoint {self.directory}/{step}"
        meta = self.read_meta(step)
        check_config(meta, program.config, where)
        model_template = _model_arrays(program.model(template))
        optimizer_template = _flat_optimizer(template)
        _check_keys(meta["model_keys"], model_template, "model", where)
        _check_keys(meta["optimizer_keys"], optimizer_template, "optimizer state", where)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardRestore(_abstract(model_template)),
                optimizer=ocp.args.StandardRestore(_abstract(optimizer_template)),
            ),
        )
        model = _merge_model(program.config, _by_name(model_template, restored.model))
        _, tables, dense, rest = split_model(model)
        optimizer = jax.tree.unflatten(
            jax.tree.structure(_optimizer_tree(template)),
            list(_by_name(optimizer_template, restored.optimizer).values()),
        )
        state = TrainState(
            step=optimizer["step"],
            tables={path[-1]: variable.get_value() for path, variable in nnx.to_flat_state(tables)},
            dense=dense,
            rest=rest,
            dense_optimizer=optimizer["dense_optimizer"],
            embedding_optimizer=optimizer["embedding_optimizer"],
        )
        return state, meta


def _flat_optimizer(state: TrainState) -> dict[str, jax.Array]:
    leaves = jax.tree_util.tree_flatten_with_path(_optimizer_tree(state))[0]
    return {jax.tree_util.keystr(path): value for path, value in leaves}


def _by_name(template: dict, indexed: dict) -> dict:
    """Restored arrays under the template's names (orbax keys are their indices)."""
    return {name: indexed[f"{index:05d}"] for index, name in enumerate(template)}


def _merge_model(config: ModelConfig, arrays: dict[str, jax.Array]) -> nnx.Module:
    """A model of `config` holding `arrays` (by nnx path), built without initializing."""
    graphdef, abstract_state = nnx.split(abstract_model(config))
    filled = [
        (path, variable.replace(arrays["/".join(str(part) for part in path)]))
        for path, variable in nnx.to_flat_state(abstract_state)
    ]
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def _open(path: str, config: ModelConfig):
    """(manager, step, meta) of a checkpoint directory or step folder, checked against
    `config`."""
    path = os.path.abspath(path)
    step = None
    if os.path.basename(path).isdigit() and os.path.exists(os.path.join(path, "meta")):
        path, step = os.path.dirname(path), int(os.path.basename(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No checkpoint directory {path}.")
    manager = _manager(path, read_only=True)
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"No complete checkpoint in {path}.")
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    check_config(meta, config, f"checkpoint {path}/{step}")
    return manager, step, meta


def checkpoint_meta(path: str, config: ModelConfig) -> dict:
    """The meta of the checkpoint at `path` (see `restore_model`), after checking that it fits
    `config`; reads no array (for failing early)."""
    return _open(path, config)[2]


def restore_model(path: str, config: ModelConfig) -> tuple[nnx.Module, dict]:
    """The trained model of a checkpoint, for inference, and the checkpoint's meta.

    `path` is a checkpoint directory (its latest step is loaded) or one step's folder in it.
    Only the model item is read (not the optimizer state). Raises FileNotFoundError if there is
    no checkpoint there, CheckpointMismatchError if it does not fit `config`.
    """
    manager, step, meta = _open(path, config)
    graphdef, abstract_state = nnx.split(abstract_model(config))
    template = {
        "/".join(str(part) for part in p): v.get_value()
        for p, v in nnx.to_flat_state(abstract_state)
    }
    _check_keys(meta["model_keys"], template, "model", f"checkpoint {path} (step {step})")
    restored = manager.restore(
        step, args=ocp.args.Composite(model=ocp.args.StandardRestore(_abstract(template)))
    )
    model = _merge_model(config, _by_name(template, restored.model))
    return model, meta


def build_trained_model(
    config: ModelConfig, path: str, huge_pages: bool, progress=print
) -> tuple[nnx.Module, str]:
    """`recjax.runtime.model_setup.build_model` for a checkpoint's trained weights: the model
    (in evaluation mode) and where its tables live."""
    start = time.perf_counter()
    model, meta = restore_model(path, config)
    model.eval()
    progress(
        f"restored the model trained to step {meta['step']} from {path} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    if not huge_pages:
        return model, SMALL_PAGES_NOTE
    note = back_tables_with_huge_pages(model.sparse_arch.table_buffers())
    progress(f"tables: {note}")
    return model, note


def arrays_equal(a, b) -> bool:
    """Whether two pytrees hold bitwise-equal arrays (for tests and resume checks)."""

    def data(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        return np.asarray(leaf)

    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(data(x), data(y)) for x, y in zip(leaves_a, leaves_b, strict=True)
    )
