r"""Train any preset with optax and sparse embedding updates; held-out AUC, throughput, memory.

    python -m benchmarks.train --model=rmc1-tiny                       # planted-signal data
    python -m benchmarks.train --model=rmc2 --data=synthetic --steps=200 --frameworks=recjax,torch
    python -m benchmarks.train --model=rmc1 --data='day_*.tsv' --eval_data=day_23.tsv \
        --checkpoint_dir=runs/rmc1-ckpt --checkpoint_every=1000

The flags shared by every binary (--model, --seed, --embedding_lowering, --huge_pages, --logdir,
--override) are defined in benchmarks/flags.py.

--data is "planted" (the default: Criteo-format files whose labels come from a known logistic
model are written into the run's folder, and that model's own held-out AUC is the best a model can
reach), "synthetic" (uniform ids and coin-flip labels, for throughput), or Criteo-format files
(comma-separated paths or globs). Prints progress (loss, steps/s, samples/s, ETA, the share of time
spent waiting for data), held-out AUC, log loss and accuracy per head, and writes results.json,
TensorBoard event files and checkpoints into --logdir:

    tensorboard --logdir runs/train
"""

import glob
import os
import sys

import jax
from absl import app, flags, logging

from benchmarks import flags as shared
from recjax.interop import torch_twins
from recjax.layers.embedding_bag import resolve_lowering
from recjax.reporting.fingerprint import fingerprint_summary
from recjax.reporting.run_reporter import RunReporter
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.memory import GIB, peak_resident_bytes
from recjax.runtime.model_setup import build_model
from recjax.train import criteo
from recjax.train.checkpoints import CheckpointMismatchError, TrainCheckpointer
from recjax.train.data import CriteoSource, SyntheticSource
from recjax.train.embedding_optimizers import EMBEDDING_OPTIMIZERS
from recjax.train.loop import HeldOut, Trainer, TrainSettings, loss_agreement, run_twin
from recjax.train.optimizers import DENSE_OPTIMIZERS, SCHEDULES, rate_at
from recjax.train.planted import write_planted_files
from recjax.train.step import check_trainable

FRAMEWORKS = ("recjax", "torch")

_DATA = flags.DEFINE_string(
    "data",
    "planted",
    "Training data: 'planted' (generate planted-signal Criteo files in the run's folder), "
    "'synthetic' (uniform ids, coin-flip labels: for throughput), or Criteo-format files "
    "(comma-separated paths or globs).",
)
_EVAL_DATA = flags.DEFINE_string(
    "eval_data",
    None,
    "Held-out Criteo files (comma-separated paths or globs). Default: the planted held-out file; "
    "for --data files, the last of them when there are several (it is then not trained on); "
    "none for synthetic data.",
)
_EVAL_EXAMPLES = flags.DEFINE_integer(
    "eval_examples", 1_000_000, "The most held-out examples one evaluation reads (>= 1)."
)
_STEPS = flags.DEFINE_integer("steps", 2000, "Train up to this step (a resumed run continues).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Examples per step.")
_EVAL_EVERY = flags.DEFINE_integer(
    "eval_every", 500, "Steps between held-out evaluations; 0: only after the last step."
)
_LOG_EVERY = flags.DEFINE_integer("log_every", 100, "Steps between progress lines.")
_OPTIMIZER = flags.DEFINE_enum(
    "optimizer", "adam", DENSE_OPTIMIZERS, "optax optimizer of the dense parameters (MLPs)."
)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Dense parameters' learning rate.")
_EMBEDDING_OPTIMIZER = flags.DEFINE_enum(
    "embedding_optimizer",
    "rowwise_adagrad",
    sorted(EMBEDDING_OPTIMIZERS),
    "Optimizer of the embedding tables; updates only the looked-up rows.",
)
_EMBEDDING_LEARNING_RATE = flags.DEFINE_float(
    "embedding_learning_rate", 0.05, "Embedding tables' learning rate."
)
_SCHEDULE = flags.DEFINE_enum(
    "schedule", "constant", SCHEDULES, "Learning-rate schedule of both optimizers."
)
_WARMUP_STEPS = flags.DEFINE_integer("warmup_steps", 0, "Linear warm-up steps of the schedule.")
_CHECKPOINT_DIR = flags.DEFINE_string(
    "checkpoint_dir",
    None,
    "Where checkpoints go; a run whose folder holds one resumes from the latest (same flags "
    "needed). Default: <logdir>/checkpoints (a fresh run).",
)
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", 0, "Steps between checkpoints; 0: only after the last step."
)
_CHECKPOINTS = flags.DEFINE_bool("checkpoints", True, "--nocheckpoints writes none.")
_CRITEO_MAPPING = flags.DEFINE_enum(
    "criteo_mapping",
    "adapt",
    criteo.MAPPINGS,
    "adapt: map Criteo's 13 integers and 26 categoricals onto any model by the documented rule; "
    "strict: only a model of 13 dense inputs and 26 one-id sparse features.",
)
_CATEGORICAL = flags.DEFINE_enum(
    "categorical", "modulo", criteo.CATEGORICAL_TRANSFORMS, "Categorical value -> row."
)
_MULTI_HOT = flags.DEFINE_enum(
    "multi_hot", "hash", criteo.MULTI_HOT, "The other ids of a feature with several per sample."
)
_WINDOW_LINES = flags.DEFINE_integer(
    "window_lines", criteo.DEFAULT_WINDOW_LINES, "Lines per shuffle window of the Criteo reader."
)
_PLANTED_EXAMPLES = flags.DEFINE_integer(
    "planted_examples", 262_144, "Training examples of generated planted data."
)
_PLANTED_EVAL_EXAMPLES = flags.DEFINE_integer(
    "planted_eval_examples", 32_768, "Held-out examples of generated planted data."
)
_PLANTED_VOCABULARY = flags.DEFINE_integer(
    "planted_vocabulary", 100, "Distinct values per categorical column of planted data."
)
_SYNTHETIC_VARIANTS = flags.DEFINE_integer(
    "synthetic_variants", 8, "Synthetic batches generated once and used in turn."
)
_FRAMEWORKS = flags.DEFINE_list(
    "frameworks",
    ["recjax"],
    "recjax, and torch: also train the family's PyTorch twin (nn.EmbeddingBag(sparse=True), "
    "torch.optim) from the same initial weights on the same batches, after recjax; needs the "
    "torch extra.",
)
_PREFETCH = flags.DEFINE_integer("prefetch", 4, "Batches prepared ahead on a background thread.")

for _name in ("steps", "batch_size", "log_every", "eval_examples", "prefetch", "window_lines"):
    flags.register_validator(_name, lambda value: value > 0, message=f"--{_name} must be >= 1.")
flags.register_validator(
    "frameworks",
    lambda values: bool(values) and "recjax" in values and set(values) <= set(FRAMEWORKS),
    message=f"--frameworks must include recjax, from {FRAMEWORKS}.",
)


def _paths(value: str) -> list[str]:
    paths = []
    for pattern in value.split(","):
        matches = sorted(glob.glob(pattern.strip()))
        if not matches:
            raise app.UsageError(f"--data/--eval_data: no file matches {pattern.strip()!r}.")
        paths.extend(matches)
    return paths


def _settings() -> TrainSettings:
    try:
        return TrainSettings(
            steps=_STEPS.value,
            batch_size=_BATCH_SIZE.value,
            optimizer=_OPTIMIZER.value,
            learning_rate=_LEARNING_RATE.value,
            embedding_optimizer=_EMBEDDING_OPTIMIZER.value,
            embedding_learning_rate=_EMBEDDING_LEARNING_RATE.value,
            schedule=_SCHEDULE.value,
            warmup_steps=_WARMUP_STEPS.value,
            log_every=_LOG_EVERY.value,
            eval_every=_EVAL_EVERY.value,
            checkpoint_every=_CHECKPOINT_EVERY.value,
            eval_examples=_EVAL_EXAMPLES.value,
            prefetch=_PREFETCH.value,
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from error


def _data(config, settings, logdir):
    """(source, held-out evaluation or None, planted summary or None)."""
    try:
        mapping = criteo.CriteoMapping(
            config, _CRITEO_MAPPING.value, _CATEGORICAL.value, _MULTI_HOT.value
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    planted = None
    eval_paths = _paths(_EVAL_DATA.value) if _EVAL_DATA.value else []
    if _DATA.value == "synthetic":
        source = SyntheticSource(
            config, settings.batch_size, seed=shared.SEED.value, variants=_SYNTHETIC_VARIANTS.value
        )
    else:
        if _DATA.value == "planted":
            print(
                f"data:    writing planted-signal Criteo files ({_PLANTED_EXAMPLES.value:,} + "
                f"{_PLANTED_EVAL_EXAMPLES.value:,} examples) into {logdir}/planted"
            )
            planted = write_planted_files(
                os.path.join(logdir, "planted"),
                _PLANTED_EXAMPLES.value,
                _PLANTED_EVAL_EXAMPLES.value,
                signal_categoricals=max(mapping.categorical_columns) + 1,
                signal_integers=mapping.dense_columns,
                vocabulary=_PLANTED_VOCABULARY.value,
                seed=shared.SEED.value,
            )
            train_paths = list(planted.train_paths)
            eval_paths = eval_paths or [planted.eval_path]
        else:
            train_paths = _paths(_DATA.value)
            if len(train_paths) > 1 and not eval_paths:
                train_paths, eval_paths = train_paths[:-1], train_paths[-1:]
        source = CriteoSource(
            train_paths,
            mapping,
            settings.batch_size,
            seed=shared.SEED.value,
            window_lines=_WINDOW_LINES.value,
            identity={"planted": planted.settings} if planted else None,
        )
    evaluation = HeldOut(eval_paths, mapping, settings.eval_examples) if eval_paths else None
    return source, evaluation, planted


def _optimizer_state_bytes(state) -> int:
    leaves = jax.tree.leaves((state.dense_optimizer, state.embedding_optimizer))
    return sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    shared.start_on_cpu()
    logging.set_verbosity(logging.WARNING)  # orbax logs every step of a save at INFO
    config = shared.model_config()
    try:
        check_trainable(config)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    settings = _settings()
    frameworks = tuple(dict.fromkeys(_FRAMEWORKS.value))
    try:
        lowering, lowering_note = resolve_lowering(config.embedding_lowering)
    except (ValueError, RuntimeError) as error:
        raise app.UsageError(str(error)) from error
    if "torch" in frameworks:
        if not torch_twins.has_torch_twin(config):
            raise app.UsageError(f"--frameworks=torch: {config.name} has no PyTorch twin.")
        try:
            torch_twins.require_torch()
        except ImportError as error:
            sys.exit(f"error: --frameworks=torch: {error}")
        torch_twins.set_torch_threads(torch_twins.usable_cores())
    needed = shared.check_memory_or_exit(
        config, settings.batch_size, extra_parameter_copies=int("torch" in frameworks)
    )
    try:
        reporter = RunReporter.start("train", config, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    print(f"machine: {fingerprint_summary(reporter.fingerprint)}")
    shared.print_model_header(config, needed, lowering, lowering_note)
    print(f"logdir:  {reporter.logdir}")
    source, evaluation, planted = _data(config, settings, reporter.logdir)
    print(f"data:    {source.describe()}")
    if planted:
        print(
            f"         the planted model's own held-out AUC: {planted.auc:.4f} (log loss "
            f"{planted.logloss:.4f}, click rate {planted.positive_rate:.3f})"
        )
    if evaluation is None:
        print("eval:    no held-out data (give --eval_data)")
    print(
        f"train:   {settings.steps} steps of {settings.batch_size}; dense {settings.optimizer} "
        f"lr {settings.learning_rate:g}, tables {settings.embedding_optimizer} lr "
        f"{settings.embedding_learning_rate:g} (sparse row updates), {settings.schedule} schedule"
    )
    checkpointer = None
    if _CHECKPOINTS.value:
        directory = _CHECKPOINT_DIR.value or os.path.join(reporter.logdir, "checkpoints")
        checkpointer = TrainCheckpointer(directory)
        print(f"checkpoints: {checkpointer.directory}")
    model, huge_pages = build_model(config, shared.SEED.value, shared.HUGE_PAGES.value)
    twin = None
    if "torch" in frameworks:
        dense_schedule, table_schedule = settings.schedules()
        try:
            twin = torch_twins.torch_trainer(
                model,
                embedding_optimizer=settings.embedding_optimizer,
                embedding_learning_rate=lambda step: rate_at(table_schedule, step),
                optimizer=settings.optimizer,
                learning_rate=lambda step: rate_at(dense_schedule, step),
            )
        except ValueError as error:
            raise app.UsageError(f"--frameworks=torch: {error}") from error
    with SummaryWriter(reporter.logdir) as writer:
        trainer = Trainer(
            model,
            settings,
            source,
            evaluation=evaluation,
            checkpointer=checkpointer,
            writer=writer,
            reference_auc=planted.auc if planted else None,
        )
        if trainer.program.scanned_recurrences:
            print(
                f"train:   recurrences {', '.join(trainer.program.scanned_recurrences)} loop by "
                "lax.scan over all steps in the train step (their while loop has no reverse-mode "
                "derivative; the same function) and by their configured loop in evaluation"
            )
        try:
            result = trainer.run()
        except CheckpointMismatchError as error:
            sys.exit(f"error: {error}")
        recjax_peak = peak_resident_bytes()
        optimizer_bytes = _optimizer_state_bytes(result.state) if result.state else None
        twin_result = None
        if twin is not None and not result.interrupted:
            print(f"torch:   the PyTorch twin, {settings.steps} steps on the same batches")
            twin_result = run_twin(
                twin,
                source,
                settings.steps,
                log_every=settings.log_every,
                prefetch=settings.prefetch,
                writer=writer,
            )
        reporter.write_texts(writer)
    results = {
        "embedding_lowering": lowering,
        "huge_pages": huge_pages,
        "settings": {
            **settings.optimizer_settings(),
            "steps": settings.steps,
            "eval_every": settings.eval_every,
            "frameworks": list(frameworks),
        },
        "data": {"source": source.settings(), "planted": planted.to_json() if planted else None},
        "recjax": result.to_json(),
        "memory": {
            "recjax_peak_resident_bytes": recjax_peak,
            "table_bytes": config.table_bytes,
            "optimizer_state_bytes": optimizer_bytes,
        },
        "checkpoint_dir": checkpointer.directory if checkpointer else None,
    }
    if twin_result is not None:
        results["torch"] = twin_result.to_json()
        results["loss_agreement"] = loss_agreement(result.step_losses, twin_result.step_losses)
    reporter.write_results(results)
    _print_summary(config, settings, result, twin_result, planted, recjax_peak, optimizer_bytes)
    reporter.print_paths()
    if result.interrupted:
        sys.exit(130)


def _print_summary(config, settings, result, twin_result, planted, peak, optimizer_bytes):
    print()
    print(f"{config.name}: {config.architecture_summary()}")
    print(f"steps {result.start_step}-{result.final_step}, batch {settings.batch_size}")
    rows = [("recjax", result.samples_per_second, result.waited_fraction)]
    if twin_result is not None:
        rows.append(("torch", twin_result.samples_per_second, twin_result.waited_fraction))
    print(f"{'framework':<10} {'samples/s':>12} {'waited for data':>16}")
    for name, rate, waited in rows:
        rate_text = f"{rate:12,.0f}" if rate else f"{'-':>12}"
        waited_text = f"{waited:16.1%}" if waited is not None else f"{'-':>16}"
        print(f"{name:<10} {rate_text} {waited_text}")
    if twin_result is not None:
        agreement = loss_agreement(result.step_losses, twin_result.step_losses)
        print(
            f"loss agreement, first {agreement['steps']} steps: max relative difference "
            f"{agreement['max_relative_difference']:.2e}"
        )
    if result.evaluations:
        for head, values in result.evaluations[-1]["heads"].items():
            reference = f" (planted model: {planted.auc:.4f})" if planted else ""
            print(
                f"held-out {head}: AUC {values['auc']:.4f}{reference}, log loss "
                f"{values['logloss']:.4f}, accuracy {values['accuracy']:.4f}"
            )
    state_text = (
        f" + optimizer state {optimizer_bytes / GIB:.2f} GiB" if optimizer_bytes is not None else ""
    )
    print(
        f"peak resident memory (recjax training): {peak / GIB:.2f} GiB; tables "
        f"{config.table_bytes / GIB:.2f} GiB{state_text}"
    )


if __name__ == "__main__":
    app.run(main)
