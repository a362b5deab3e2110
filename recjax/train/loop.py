"""The training loop: steps on prefetched batches, progress, evaluation, checkpoints, resuming.

    settings = TrainSettings(steps=2000, batch_size=256, eval_every=500)
    trainer = Trainer(model, settings, source, evaluation=HeldOut(paths, mapping),
                      checkpointer=TrainCheckpointer(dir), writer=summary_writer)
    result = trainer.run()     # resumes from the checkpointer's latest checkpoint, if any

Works for a model of any family (`TrainProgram`). Throughput counts the steps after the first
(which includes compilation), and excludes the time spent evaluating and checkpointing;
`waited_fraction` is the share of that time the loop spent waiting for the next batch.
A resumed run reads the batches an uninterrupted run would have read next (the data position is
in the checkpoint) from the same parameters and optimizer state, so it continues bitwise.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax import nnx

from recjax.reporting.summary_writer import SummaryWriter
from recjax.train import metrics
from recjax.train.checkpoints import CheckpointMismatchError, TrainCheckpointer, check_config
from recjax.train.criteo import CriteoMapping
from recjax.train.data import BatchSource, eval_batches
from recjax.train.embedding_optimizers import embedding_optimizer
from recjax.train.optimizers import dense_optimizer, learning_rate_schedule, rate_at
from recjax.train.prefetch import Prefetcher
from recjax.train.step import TrainProgram, TrainState


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How to train (the binary's flags map onto these fields).

    Attributes:
      steps: the step to train up to (a resumed run continues to it).
      batch_size: examples per step.
      optimizer: the dense parameters' optax optimizer (`optimizers.DENSE_OPTIMIZERS`).
      learning_rate: its base learning rate.
      embedding_optimizer: the tables' optimizer ("sgd" or "rowwise_adagrad").
      embedding_learning_rate: its base learning rate.
      schedule: the learning-rate schedule of both (`optimizers.SCHEDULES`).
      warmup_steps: linear warm-up steps of the schedule.
      log_every: steps between progress lines (and training-loss summaries).
      eval_every: steps between held-out evaluations (0: only at the end).
      checkpoint_every: steps between checkpoints (0: only at the end), with a checkpointer.
      eval_examples: the most held-out examples an evaluation reads (None: all).
      prefetch: batches prepared ahead by the background thread.
    """

    steps: int
    batch_size: int
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    embedding_optimizer: str = "rowwise_adagrad"
    embedding_learning_rate: float = 0.05
    schedule: str = "constant"
    warmup_steps: int = 0
    log_every: int = 100
    eval_every: int = 0
    checkpoint_every: int = 0
    eval_examples: int | None = None
    prefetch: int = 4

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "prefetch"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}.")
        for name in ("eval_every", "checkpoint_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}.")

    def schedules(self):
        """(dense schedule, table schedule)."""
        return tuple(
            learning_rate_schedule(self.schedule, rate, self.steps, self.warmup_steps)
            for rate in (self.learning_rate, self.embedding_learning_rate)
        )

    def optimizer_settings(self) -> dict:
        """What a resumed run must share with the checkpoint for its steps to be the same."""
        settings = {
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "embedding_optimizer": self.embedding_optimizer,
            "embedding_learning_rate": self.embedding_learning_rate,
            "schedule": self.schedule,
            "warmup_steps": self.warmup_steps,
            "batch_size": self.batch_size,
        }
        if self.schedule != "constant":
            settings["steps"] = self.steps  # decaying schedules end at `steps`
        return settings


def make_program(model: nnx.Module, settings: TrainSettings) -> TrainProgram:
    """The `TrainProgram` of `model` with the settings' optimizers and schedules."""
    dense_schedule, table_schedule = settings.schedules()
    return TrainProgram(
        model,
        dense_optimizer(settings.optimizer, dense_schedule),
        embedding_optimizer(settings.embedding_optimizer, table_schedule),
    )


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Held-out Criteo files, evaluated in order with the training batch size."""

    paths: Sequence[str]
    mapping: CriteoMapping
    max_examples: int | None = None

    def __call__(self, program: TrainProgram, state: TrainState, batch_size: int):
        """{head: metrics.head_metrics(...)} over the files."""
        probabilities: dict[str, list[np.ndarray]] = {head: [] for head in program.config.heads}
        labels: dict[str, list[np.ndarray]] = {head: [] for head in program.config.heads}
        for batch, count in eval_batches(self.paths, self.mapping, batch_size, self.max_examples):
            predicted = program.predict(state, jax.device_put(batch.without_labels()))
            for head in program.config.heads:
                probabilities[head].append(np.asarray(predicted[head])[:count])
                labels[head].append(np.asarray(batch.labels[head])[:count])
        return {
            head: metrics.head_metrics(np.concatenate(labels[head]), np.concatenate(p))
            for head, p in probabilities.items()
        }


Evaluation = Callable[[TrainProgram, TrainState, int], dict[str, dict[str, float]]]


@dataclasses.dataclass
class TrainResult:
    """What a run did. `state` is the final state (not serialized)."""

    start_step: int
    final_step: int
    interrupted: bool
    train_seconds: float
    samples_per_second: float | None
    steps_per_second: float | None
    waited_fraction: float | None
    step_losses: list[float]
    log: list[dict]
    evaluations: list[dict]
    checkpoints: list[int]
    state: TrainState | None = None

    def to_json(self) -> dict:
        values = dataclasses.asdict(dataclasses.replace(self, state=None))
        values.pop("state")
        return values


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Trainer:
    """Runs a `TrainProgram` over a `BatchSource` (see the module docstring).

    Args:
      model: a freshly built model (its initial parameters; ignored when resuming).
      settings: the run's settings.
      source: the training batches.
      evaluation: held-out metrics (e.g. `HeldOut`), or None.
      checkpointer: where checkpoints go and a run resumes from, or None.
      writer: TensorBoard summaries, or None.
      progress: prints a line.
      reference: {head: number} drawn beside each evaluation's AUC in TensorBoard (the planted
        model's own AUC).
    """

    def __init__(
        self,
        model: nnx.Module,
        settings: TrainSettings,
        source: BatchSource,
        *,
        evaluation: Evaluation | None = None,
        checkpointer: TrainCheckpointer | None = None,
        writer: SummaryWriter | None = None,
        progress: Callable[[str], None] = print,
        reference_auc: float | None = None,
    ):
        if source.batch_size != settings.batch_size:
            raise ValueError(
                f"The source's batch size {source.batch_size} is not the settings' "
                f"{settings.batch_size}."
            )
        self.settings = settings
        self.source = source
        self.evaluation = evaluation
        self.checkpointer = checkpointer
        self.writer = writer
        self.progress = progress
        self.reference_auc = reference_auc
        self.program = make_program(model, settings)
        self.config = model.config
        self.dense_schedule, self.table_schedule = settings.schedules()
        self._model = model

    def initial_state(self) -> tuple[TrainState, dict | None, int]:
        """(state, data position, step): fresh, or from the latest checkpoint."""
        if self.checkpointer is None or self.checkpointer.latest_step() is None:
            return self.program.init(self._model), None, 0
        template = jax.eval_shape(lambda: self.program.init(self._model))
        meta = self.checkpointer.read_meta()
        where = f"checkpoint {self.checkpointer.directory}/{meta['step']}"
        check_config(meta, self.config, where)
        for what, saved, current in (
            ("data", meta["data"]["settings"], self.source.settings()),
            ("optimizer settings", meta["optimizer"], self.settings.optimizer_settings()),
        ):
            if saved != current:
                keys = sorted(
                    k for k in set(saved) | set(current) if saved.get(k) != current.get(k)
                )
                raise CheckpointMismatchError(
                    f"{where} was trained with other {what}, so this run cannot continue it "
                    "exactly: "
                    + "; ".join(
                        f"{k}: checkpoint {saved.get(k)!r}, this run {current.get(k)!r}"
                        for k in keys
                    )
                    + ". Give the same flags, or another --checkpoint_dir."
                )
        state, meta = self.checkpointer.restore(self.program, template)
        self.progress(f"resumed from {where} (step {meta['step']})")
        return state, meta["data"]["position"], int(meta["step"])

    def _evaluate(self, state: TrainState, step: int) -> dict:
        start = time.perf_counter()
        heads = self.evaluation(self.program, state, self.settings.batch_size)
        seconds = time.perf_counter() - start
        parts = [
            f"{head} AUC {values['auc']:.4f} logloss {values['logloss']:.4f} "
            f"accuracy {values['accuracy']:.4f}"
            for head, values in heads.items()
        ]
        reference = f" (planted model's AUC {self.reference_auc:.4f})" if self.reference_auc else ""
        examples = next(iter(heads.values()))["examples"]
        self.progress(
            f"eval     step {step}: {'; '.join(parts)}{reference} [{examples:,} held-out "
            f"examples, {seconds:.1f} s]"
        )
        if self.writer:
            for head, values in heads.items():
                for name in ("auc", "logloss", "accuracy"):
                    self.writer.scalar(f"eval/{head}/{name}", values[name], step)
                if self.reference_auc:
                    self.writer.scalar(f"eval/{head}/planted_auc", self.reference_auc, step)
            self.writer.flush()
        return {"step": step, "seconds": seconds, "heads": heads}

    def _checkpoint(self, state: TrainState, position: dict | None) -> None:
        start = time.perf_counter()
        path = self.checkpointer.save(
            self.program,
            state,
            {
                "data": {"settings": self.source.settings(), "position": position},
                "optimizer": self.settings.optimizer_settings(),
            },
        )
        self.progress(f"checkpoint {path} ({time.perf_counter() - start:.1f} s)")

    def run(self) -> TrainResult:
        settings = self.settings
        state, position, start_step = self.initial_state()
        step = start_step
        if start_step >= settings.steps:
            self.progress(
                f"the checkpoint is at step {start_step}: nothing to train to step {settings.steps}"
            )
        log, evaluations, checkpoints, step_losses = [], [], [], []
        interrupted = False
        excluded = 0.0  # seconds of evaluation and checkpointing inside the measured window
        measured_from = waited_from = None
        pending: list[dict] = []  # metrics of the steps since the last progress line
        in_flight = None
        prefetcher = Prefetcher(
            self.source.batches(position),
            transform=lambda item: (jax.device_put(item[0]), item[1]),
            depth=settings.prefetch,
        )
        try:
            while step < settings.steps:
                batch, position = next(prefetcher)
                state, step_metrics = self.program.step(state, batch)
                step += 1
                pending.append(step_metrics)
                if in_flight is not None:  # at most two steps dispatched ahead of the host
                    jax.block_until_ready(in_flight)
                in_flight = step_metrics["loss"]
                if measured_from is None:  # the first step compiles: the clock starts after it
                    jax.block_until_ready(step_metrics)
                    measured_from = time.perf_counter()
                    waited_from = prefetcher.waited_seconds
                last = step == settings.steps
                if step % settings.log_every == 0 or last:
                    losses = [{k: float(v) for k, v in m.items()} for m in pending]
                    step_losses.extend(m["loss"] for m in losses)
                    pending = []
                    elapsed = time.perf_counter() - measured_from - excluded
                    log.append(
                        self._log_line(
                            step,
                            step - start_step - 1,
                            elapsed,
                            prefetcher.waited_seconds - waited_from,
                            losses,
                        )
                    )
                if self.evaluation and (
                    last or (settings.eval_every and step % settings.eval_every == 0)
                ):
                    begin = time.perf_counter()
                    evaluations.append(self._evaluate(state, step))
                    excluded += time.perf_counter() - begin
                if self.checkpointer and (
                    last or (settings.checkpoint_every and step % settings.checkpoint_every == 0)
                ):
                    begin = time.perf_counter()
                    jax.block_until_ready(state)
                    self._checkpoint(state, position)
                    checkpoints.append(step)
                    excluded += time.perf_counter() - begin
            jax.block_until_ready(state)
        except KeyboardInterrupt:
            interrupted = True
            last_checkpoint = self.checkpointer.latest_step() if self.checkpointer else None
            self.progress(
                f"interrupted after step {step}; "
                + (
                    f"the last complete checkpoint is step {last_checkpoint} in "
                    f"{self.checkpointer.directory}: run the same command to resume from it"
                    if last_checkpoint is not None
                    else "no checkpoint was written"
                )
            )
        finally:
            prefetcher.close()
        measured = None if measured_from is None else time.perf_counter() - measured_from - excluded
        steps_measured = step - start_step - 1
        rate = steps_measured / measured if measured and steps_measured > 0 else None
        waited = (
            (prefetcher.waited_seconds - waited_from) / measured
            if measured and waited_from is not None
            else None
        )
        return TrainResult(
            start_step=start_step,
            final_step=step,
            interrupted=interrupted,
            train_seconds=measured or 0.0,
            samples_per_second=rate * settings.batch_size if rate else None,
            steps_per_second=rate,
            waited_fraction=waited,
            step_losses=step_losses,
            log=log,
            evaluations=evaluations,
            checkpoints=checkpoints,
            state=None if interrupted else state,
        )

    def _log_line(
        self, step: int, steps_done: int, elapsed: float, waited: float, losses: list[dict]
    ) -> dict:
        """Prints and records one progress line; `losses` are the steps' metrics since the last."""
        mean = {key: float(np.mean([m[key] for m in losses])) for key in losses[0]}
        rate = steps_done / elapsed if steps_done > 0 and elapsed > 0 else None
        waited_fraction = waited / elapsed if elapsed > 0 else 0.0
        dense_rate = rate_at(self.dense_schedule, step)
        table_rate = rate_at(self.table_schedule, step)
        heads = "  ".join(
            f"{key.removeprefix('loss/')} {value:.4f}"
            for key, value in mean.items()
            if key.startswith("loss/") and len(self.config.heads) > 1
        )
        speed = "(compiled)"
        if rate:
            eta = (self.settings.steps - step) / rate
            speed = (
                f"{rate:6.2f} steps/s {rate * self.settings.batch_size:9,.0f} samples/s  "
                f"ETA {_duration(eta)}  waited for data {waited_fraction:.0%}"
            )
        self.progress(
            f"step {step:>7}/{self.settings.steps}  loss {mean['loss']:.4f}"
            + (f" ({heads})" if heads else "")
            + f"  {speed}"
        )
        if self.writer:
            for key, value in mean.items():
                self.writer.scalar(f"train/{key}", value, step)
            self.writer.scalar("train/learning_rate", dense_rate, step)
            self.writer.scalar("train/embedding_learning_rate", table_rate, step)
            if rate:
                self.writer.scalar("train/steps_per_second", rate, step)
                self.writer.scalar(
                    "train/samples_per_second", rate * self.settings.batch_size, step
                )
                self.writer.scalar("data/waited_fraction", waited_fraction, step)
            self.writer.flush()
        return {
            "step": step,
            **mean,
            "steps_per_second": rate,
            "waited_fraction": waited_fraction,
            "learning_rate": dense_rate,
            "embedding_learning_rate": table_rate,
        }


@dataclasses.dataclass
class TwinResult:
    """A PyTorch twin's run over the same batches (see `run_twin`)."""

    steps: int
    train_seconds: float
    samples_per_second: float | None
    steps_per_second: float | None
    waited_fraction: float | None
    step_losses: list[float]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def run_twin(
    trainer,
    source: BatchSource,
    steps: int,
    *,
    log_every: int = 100,
    prefetch: int = 4,
    progress: Callable[[str], None] = print,
    writer: SummaryWriter | None = None,
) -> TwinResult:
    """Trains a twin (`prepare(batch)`, `step(prepared) -> loss`, e.g. a `TorchTrainer`) for
    `steps` steps on `source`'s batches from the start, timed as `Trainer` times recjax: the
    clock starts after the first step. Batches are converted on the prefetch thread."""
    losses: list[float] = []
    measured_from = waited_from = None
    with Prefetcher(
        source.batches(None), transform=lambda item: trainer.prepare(item[0]), depth=prefetch
    ) as prefetcher:
        for step in range(1, steps + 1):
            losses.append(trainer.step(next(prefetcher)))
            if measured_from is None:
                measured_from = time.perf_counter()
                waited_from = prefetcher.waited_seconds
            if step % log_every == 0 or step == steps:
                elapsed = time.perf_counter() - measured_from
                rate = (step - 1) / elapsed if step > 1 and elapsed > 0 else None
                waited = (prefetcher.waited_seconds - waited_from) / elapsed if elapsed else 0.0
                mean = float(np.mean(losses[-log_every:]))
                speed = (
                    f"{rate:6.2f} steps/s {rate * source.batch_size:9,.0f} samples/s  "
                    f"ETA {_duration((steps - step) / rate)}  waited for data {waited:.0%}"
                    if rate
                    else ""
                )
                progress(f"torch {step:>7}/{steps}  loss {mean:.4f}  {speed}")
                if writer:
                    writer.scalar("torch/loss", mean, step)
                    if rate:
                        writer.scalar("torch/samples_per_second", rate * source.batch_size, step)
        elapsed = time.perf_counter() - measured_from
        waited = (prefetcher.waited_seconds - waited_from) / elapsed if elapsed > 0 else None
    rate = (steps - 1) / elapsed if steps > 1 and elapsed > 0 else None
    return TwinResult(
        steps=steps,
        train_seconds=elapsed,
        samples_per_second=rate * source.batch_size if rate else None,
        steps_per_second=rate,
        waited_fraction=waited,
        step_losses=losses,
    )


def loss_agreement(recjax_losses: Sequence[float], twin_losses: Sequence[float], steps: int = 50):
    """{"steps", "max_relative_difference"} of the first `steps` losses of two runs."""
    count = min(steps, len(recjax_losses), len(twin_losses))
    a = np.asarray(recjax_losses[:count], np.float64)
    b = np.asarray(twin_losses[:count], np.float64)
    difference = np.abs(a - b) / np.maximum(np.abs(a), 1e-12)
    return {
        "steps": count,
        "max_relative_difference": float(difference.max()) if count else None,
        "recjax": a.tolist(),
        "torch": b.tolist(),
    }
