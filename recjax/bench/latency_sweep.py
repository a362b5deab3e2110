"""The latency sweep behind `benchmarks.latency`: every (mode, batch size), measured and reported.

Modes:
  jit    the pure predict function, jitted for the CPU backend and compiled ahead of time per
         batch size (compile time reported on its own, outside the timed calls).
  eager  the same function on the same parameters and inputs, run op by op (`jax.disable_jit`).
  torch  the same weights and inputs in the family's eager PyTorch twin
         (`recjax.interop.torch_twins`; the DLRM's has one nn.EmbeddingBag per table), timed with
         the jit budget; needs the optional torch extra.
  torchrec  the same weights (tables read as float32) in TorchRec's quantized inference model,
         int8 row-wise tables over FBGEMM (`recjax.interop.torchrec_twins`), timed with the jit
         budget; needs the optional torchrec extra.

Every family goes through the same code: predictions are {head: probabilities [B]}, and the
difference from jit is the largest over all heads.
"""

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
from flax import nnx

from recjax.bench.timing import LatencyStats, TimingBudget, time_calls
from recjax.inputs import locality
from recjax.inputs.id_distributions import IdDistribution
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.models.family import ModelConfig
from recjax.models.overrides import overridable_fields
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.inference import CompiledPredictor, EagerPredictor

MODES = ("jit", "eager", "torch", "torchrec")
# Modes compared with jit in the table and the summaries: their p50 over jit's.
PEERS = ("torch", "torchrec")


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    batch_sizes: tuple[int, ...]
    modes: tuple[str, ...]
    seed: int
    jit_budget: TimingBudget
    eager_budget: TimingBudget

    def __post_init__(self):
        if not self.batch_sizes or min(self.batch_sizes) <= 0:
            raise ValueError(
                f"Batch sizes must be a non-empty list of positive integers; got "
                f"{list(self.batch_sizes)}."
            )
        unknown = [mode for mode in self.modes if mode not in MODES]
        if not self.modes or unknown:
            raise ValueError(
                f"Modes must be a non-empty subset of {list(MODES)}; got {list(self.modes)}."
            )

    def budget(self, mode: str) -> TimingBudget:
        return self.eager_budget if mode == "eager" else self.jit_budget


@dataclasses.dataclass(frozen=True)
class Measurement:
    """The timed calls of one (mode, batch size)."""

    mode: str
    batch_size: int
    latencies_s: np.ndarray
    compile_seconds: float | None
    max_abs_difference_from_jit: float | None

    @property
    def stats(self) -> LatencyStats:
        return LatencyStats.from_seconds(self.latencies_s)

    @property
    def throughput_samples_per_s(self) -> float:
        """Samples per second over all timed calls (batch size / mean latency)."""
        return self.batch_size / float(np.mean(self.latencies_s))

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "batch_size": self.batch_size,
            **dataclasses.asdict(self.stats),
            "throughput_samples_per_s": self.throughput_samples_per_s,
            "compile_seconds": self.compile_seconds,
            "max_abs_difference_from_jit": self.max_abs_difference_from_jit,
            "latencies_ms": [round(value * 1e3, 6) for value in self.latencies_s.tolist()],
        }


def _as_arrays(predictions: dict) -> dict[str, np.ndarray]:
    return {head: np.asarray(value) for head, value in predictions.items()}


def _max_abs_difference(output: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(output[head] - reference[head]))) for head in reference)


def batch_seed(seed: int, batch_size: int) -> int:
    """The seed of the synthetic batch that a sweep with `seed` times at `batch_size`."""
    return seed + batch_size


def run_sweep(
    model: nnx.Module,
    settings: SweepSettings,
    progress: Callable[[str], None] = print,
    ids: Mapping[str, IdDistribution] | None = None,
) -> list[Measurement]:
    """Measures every (batch size, mode) on the same synthetic batch per batch size.

    `ids`: each table's id distribution (`recjax.inputs.id_distributions`); default uniform.
    """
    config = model.config
    predictors = {"jit": CompiledPredictor(model), "eager": EagerPredictor(model)}
    if "torch" in settings.modes:
        from recjax.interop.torch_twins import torch_predictor  # torch is an optional extra

        progress(f"{config.name}: copying the weights into the PyTorch model ...")
        predictors["torch"] = torch_predictor(model)
    if "torchrec" in settings.modes:
        from recjax.interop.torchrec_twins import torchrec_predictor  # an optional extra

        progress(f"{config.name}: loading the weights into TorchRec and quantizing to int8 ...")
        predictors["torchrec"] = torchrec_predictor(model)
    total = len(settings.batch_sizes) * len(settings.modes)
    measurements = []
    for batch_size in settings.batch_sizes:
        seed = batch_seed(settings.seed, batch_size)
        batch = to_device(synthetic_features(config, batch_size, seed=seed, ids=ids))
        jit_output = None
        for mode in settings.modes:
            step = (
                f"[{len(measurements) + 1}/{total}] {config.name} {mode:<5} batch {batch_size:>5}"
            )
            predictor = predictors[mode]
            compile_seconds = None
            if mode == "jit":
                progress(f"{step}: compiling ...")
                compile_seconds = predictor.compile(batch_size)
            progress(f"{step}: timing ...")
            # torch takes its own tensors, made once outside the timed calls like `batch` itself.
            inputs = predictor.prepare(batch) if mode in PEERS else batch
            output = _as_arrays(predictor(inputs))
            latencies = time_calls(lambda: predictor(inputs), settings.budget(mode))  # noqa: B023
            difference = None
            if mode == "jit":
                jit_output = output
            elif jit_output is not None:
                difference = _max_abs_difference(output, jit_output)
            measurement = Measurement(mode, batch_size, latencies, compile_seconds, difference)
            measurements.append(measurement)
            stats = measurement.stats
            compiled = f"compiled in {compile_seconds:.2f} s, " if compile_seconds else ""
            progress(
                f"{step}: {compiled}{stats.iterations} calls in {np.sum(latencies):.1f} s, "
                f"p50 {stats.p50_ms:.3f} ms, p99 {stats.p99_ms:.3f} ms"
            )
    return measurements


def speedups(measurements: list[Measurement], baseline: str = "eager") -> dict[int, float]:
    """`baseline` p50 over jit p50, per batch size where both were measured."""
    p50 = {(m.mode, m.batch_size): m.stats.p50_ms for m in measurements}
    return {
        batch: p50[(baseline, batch)] / p50[("jit", batch)]
        for mode, batch in p50
        if mode == "jit" and (baseline, batch) in p50
    }


def format_table(config: ModelConfig, measurements: list[Measurement]) -> str:
    """The results as a fixed-width table, one row per (mode, batch size).

    "jit speedup" is the eager p50 over the jit p50; "torch/jit" and "torchrec/jit" (shown when
    that mode was measured) the peer's p50 over the jit p50: above 1, recjax is faster.
    """
    speedup = speedups(measurements)
    over_peers = {
        peer: ratios for peer in PEERS if (ratios := speedups(measurements, baseline=peer))
    }
    header = (
        f"{'mode':<9}{'batch':>6}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}"
        f"{'samples/s':>12}{'compile s':>11}{'calls':>7}{'jit speedup':>13}"
        + "".join(f"{peer + '/jit':>14}" for peer in over_peers)
    )
    lines = [f"{config.name}: {config.architecture_summary()}", header, "-" * len(header)]
    for m in sorted(measurements, key=lambda m: (MODES.index(m.mode), m.batch_size)):
        s = m.stats
        compile_text = f"{m.compile_seconds:.2f}" if m.compile_seconds is not None else "-"
        speedup_text = (
            f"{speedup[m.batch_size]:.1f}x" if m.mode == "jit" and m.batch_size in speedup else "-"
        )
        peer_texts = [
            f"{ratios[m.batch_size]:.2f}x" if m.mode == "jit" and m.batch_size in ratios else "-"
            for ratios in over_peers.values()
        ]
        lines.append(
            f"{m.mode:<9}{m.batch_size:>6}{s.p50_ms:>10.3f}{s.p90_ms:>10.3f}{s.p99_ms:>10.3f}"
            f"{s.mean_ms:>10.3f}{m.throughput_samples_per_s:>12,.0f}{compile_text:>11}"
            f"{s.iterations:>7}{speedup_text:>13}" + "".join(f"{text:>14}" for text in peer_texts)
        )
    return "\n".join(lines)


def write_summaries(
    writer: SummaryWriter,
    measurements: list[Measurement],
    hparams: dict[str, bool | int | float | str],
    texts: dict[str, str],
    trial_id: str,
) -> None:
    """Scalars and histograms with the batch size as the step, plus hparams and text."""
    for m in measurements:
        s = m.stats
        for name in ("p50", "p90", "p99", "mean"):
            writer.scalar(f"{m.mode}/latency_ms/{name}", getattr(s, f"{name}_ms"), m.batch_size)
        writer.scalar(
            f"{m.mode}/throughput_samples_per_s", m.throughput_samples_per_s, m.batch_size
        )
        writer.histogram(f"{m.mode}/latency_ms", m.latencies_s * 1e3, m.batch_size)
        if m.compile_seconds is not None:
            writer.scalar(f"{m.mode}/compile_seconds", m.compile_seconds, m.batch_size)
    for baseline in ("eager", *PEERS):
        for batch_size, value in speedups(measurements, baseline).items():
            writer.scalar(f"speedup/jit_over_{baseline}_p50", value, batch_size)
    writer.hparams(hparams, trial_id=trial_id)
    for tag, markdown in texts.items():
        writer.text(tag, markdown)
    writer.flush()


def hparams_of(config: ModelConfig, settings: SweepSettings) -> dict[str, bool | int | float | str]:
    """The preset's fields and the run's settings, flattened for TensorBoard's hparams plugin."""
    fields = {}
    for name in overridable_fields(config):
        value = getattr(config, name)
        if value is None:  # an unset optional field (table_dtype: each table keeps its own)
            continue
        fields[name] = "-".join(map(str, value)) if isinstance(value, tuple) else value
    return {
        **fields,
        "model": config.name,
        "tables": len(config.tables),
        "sparse_features": len(config.features),
        "lookups_per_sample": config.lookups_per_sample,
        "table_dtypes": ",".join(sorted({table.dtype for table in config.tables})),
        "batch_sizes": ",".join(map(str, settings.batch_sizes)),
        "modes": ",".join(settings.modes),
        "seed": settings.seed,
        "jit_min_iterations": settings.jit_budget.min_iterations,
        "jit_min_seconds": settings.jit_budget.min_seconds,
        "eager_max_seconds": settings.eager_budget.max_seconds,
    }


def measure_locality(
    config: ModelConfig,
    settings: SweepSettings,
    ids: Mapping[str, IdDistribution] | None,
    cache_bytes: int,
    max_sample_lookups: int = locality.DEFAULT_SAMPLE_LOOKUPS,
    progress: Callable[[str], None] = print,
) -> list[locality.TableLocality]:
    """The locality figures of every table at every batch size, on the batches the sweep timed."""
    figures, memo = [], {}
    for batch_size in settings.batch_sizes:
        progress(f"{config.name} batch {batch_size:>5}: measuring the locality of the ids ...")
        batch = synthetic_features(
            config, batch_size, seed=batch_seed(settings.seed, batch_size), ids=ids
        )
        figures += locality.measure_locality(
            config, batch, ids, settings.seed, cache_bytes, max_sample_lookups, memo
        )
    return figures
