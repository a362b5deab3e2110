"""Operator breakdown: where compiled inference time goes, stage by stage, per batch size.

Method: each stage of the DLRM forward pass is compiled as its own program (a pure function, its
parameters passed as arguments) and timed on that stage's real inputs, the outputs of the stages
before it:

    embedding    sparse arch: ids [B, T, L] -> pooled [B, T, D]
    bottom_mlp   dense arch: dense [B, F] -> [B, H]
    interaction  [B, H], [B, T, D] -> [B, W]
    top_mlp      over arch and sigmoid: [B, W] -> probabilities [B]

The stage programs, the end-to-end program and the stages' no-op twins (below) are timed side by
side, in interleaved rounds, so that a slow spell of a shared machine falls on all of them alike.
The end-to-end time is that of `CompiledPredictor`, the program `benchmarks.latency` times: all
stages in one program plus the id range check and its one-scalar read-back. A stage's share is its
median time over the end-to-end median; "rest" is what is left, 1 - sum of the stage shares. The
rest is not an operator: it is the range check, plus the differences between running the stages
apart and together. Those run both ways: every stage program pays its own call overhead (dispatch,
argument handling, the wait for the result), which the end-to-end program pays once, and XLA fuses
across stage boundaries in the whole program (the "cat" interaction becomes a few copies or
vanishes into the top MLP's first matrix multiply). So the rest can be negative, most at batch 1,
where the call overhead is a large part of each stage. Each stage's call overhead is measured on
its own (a compiled program taking the stage's arguments and doing nothing) and their sum is
reported beside the shares, so a reader can see how much of the stage times it explains.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.bench.timing import LatencyStats, TimingBudget, time_calls
from recjax.inputs.data import synthetic_batch, to_device
from recjax.layers.interaction import interact
from recjax.models.dlrm import DLRM
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.inference import CompiledPredictor

STAGES = ("embedding", "bottom_mlp", "interaction", "top_mlp")
REST = "rest"
# The shares of a breakdown sum to 1 up to float64 rounding of a few additions.
SHARE_SUM_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class Breakdown:
    """The median times of one batch size, in milliseconds, and the shares derived from them.

    Attributes:
      batch_size: B.
      stage_ms: median time of each stage's own compiled program, keyed by `STAGES`.
      end_to_end_ms: median time of the whole compiled predict call.
      call_overhead_ms: the sum over the stages of the median time of a compiled program that
        takes the stage's arguments and does nothing: the fixed cost that the stage programs pay
        four times and the end-to-end program pays once.
      stage_stats: full statistics per stage and for "end_to_end" (for the JSON results).
    """

    batch_size: int
    stage_ms: dict[str, float]
    end_to_end_ms: float
    call_overhead_ms: float
    stage_stats: dict[str, LatencyStats] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if set(self.stage_ms) != set(STAGES):
            raise ValueError(f"Need a time for each stage {STAGES}; got {sorted(self.stage_ms)}.")
        if self.end_to_end_ms <= 0 or min(self.stage_ms.values()) < 0:
            raise ValueError(
                f"Times must be non-negative and the end-to-end time positive; got stages "
                f"{self.stage_ms}, end to end {self.end_to_end_ms}."
            )

    @property
    def shares(self) -> dict[str, float]:
        """Share of the end-to-end time per stage, plus "rest" (may be negative); sums to 1."""
        shares = {stage: self.stage_ms[stage] / self.end_to_end_ms for stage in STAGES}
        shares[REST] = 1.0 - sum(shares.values())
        return shares

    @property
    def rest_ms(self) -> float:
        return self.end_to_end_ms - sum(self.stage_ms.values())

    @property
    def fc_share_of_stages(self) -> float:
        """Bottom plus top MLP over the sum of the stages: the paper's "FC share of operators"."""
        return (self.stage_ms["bottom_mlp"] + self.stage_ms["top_mlp"]) / sum(
            self.stage_ms.values()
        )

    @property
    def embedding_share_of_stages(self) -> float:
        """Embedding over the sum of the stages: the paper's "SparseLengthsSum share"."""
        return self.stage_ms["embedding"] / sum(self.stage_ms.values())

    @property
    def dominant_stage(self) -> str:
        return max(STAGES, key=lambda stage: self.stage_ms[stage])

    def to_json(self) -> dict[str, object]:
        return {
            "batch_size": self.batch_size,
            "end_to_end_ms": self.end_to_end_ms,
            "stage_ms": dict(self.stage_ms),
            "rest_ms": self.rest_ms,
            "call_overhead_ms": self.call_overhead_ms,
            "shares": self.shares,
            "fc_share_of_stages": self.fc_share_of_stages,
            "embedding_share_of_stages": self.embedding_share_of_stages,
            "stats": {name: dataclasses.asdict(stats) for name, stats in self.stage_stats.items()},
        }


def _pure(module: nnx.Module, apply: Callable) -> tuple[Callable, nnx.State]:
    """(jitted fn(params, *inputs), params) of `apply(module, *inputs)`, params as arguments."""
    graphdef, params = nnx.split(module)

    def function(params, *inputs):
        return apply(nnx.merge(graphdef, params), *inputs)

    return jax.jit(function), params


class StagePrograms:
    """The four stages of a DLRM as separately compiled programs sharing the model's parameters.

    Example:
        >>> programs = StagePrograms(model)
        >>> calls = programs.calls(batch)     # {stage: zero-argument call on the real inputs}
    """

    def __init__(self, model: DLRM):
        self.config = model.config
        self._embedding, self._embedding_params = _pure(model.sparse_arch, lambda m, ids: m(ids))
        self._bottom, self._bottom_params = _pure(model.dense_arch, lambda m, dense: m(dense))
        self._top, self._top_params = _pure(
            model.over_arch, lambda m, x: jax.nn.sigmoid(m(x)[:, 0])
        )
        kind = self.config.interaction
        self._interaction = jax.jit(lambda dense_out, pooled: interact(kind, dense_out, pooled))

    def calls(self, batch) -> dict[str, tuple[Callable[[], jax.Array], Callable[[], jax.Array]]]:
        """Compiles every stage for this batch's size.

        Returns, per stage, (a call running the stage on its real inputs, a call of a compiled
        program that takes the same arguments and does nothing: the stage's fixed call cost).
        """
        embedding = self._embedding.lower(self._embedding_params, batch.sparse_ids).compile()
        bottom = self._bottom.lower(self._bottom_params, batch.dense).compile()
        pooled = jax.block_until_ready(embedding(self._embedding_params, batch.sparse_ids))
        dense_out = jax.block_until_ready(bottom(self._bottom_params, batch.dense))
        interaction = self._interaction.lower(dense_out, pooled).compile()
        interacted = jax.block_until_ready(interaction(dense_out, pooled))
        top = self._top.lower(self._top_params, interacted).compile()
        arguments = {
            "embedding": (embedding, (self._embedding_params, batch.sparse_ids)),
            "bottom_mlp": (bottom, (self._bottom_params, batch.dense)),
            "interaction": (interaction, (dense_out, pooled)),
            "top_mlp": (top, (self._top_params, interacted)),
        }
        return {
            stage: (functools.partial(program, *args), _noop_call(args))
            for stage, (program, args) in arguments.items()
        }


def _noop_call(arguments: tuple) -> Callable[[], jax.Array]:
    """A call of a compiled program taking `arguments` and returning a constant."""
    program = jax.jit(lambda *args: jnp.zeros((), jnp.float32), keep_unused=True)
    compiled = program.lower(*arguments).compile()
    return functools.partial(compiled, *arguments)


def time_interleaved(
    calls: dict[str, Callable[[], object]], budget: TimingBudget, rounds: int
) -> dict[str, np.ndarray]:
    """Per-call latencies (s) of every call, timed in `rounds` interleaved rounds.

    Each round times every call in turn for 1/rounds of the budget, so that a slow spell of a
    shared machine falls on all of them alike instead of on whichever was being timed. The warm-up
    calls run once, in the first round.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1; got {rounds}.")
    chunk = TimingBudget(
        warmup=0,
        min_iterations=max(1, -(-budget.min_iterations // rounds)),
        max_iterations=max(1, budget.max_iterations // rounds),
        min_seconds=budget.min_seconds / rounds,
        max_seconds=budget.max_seconds / rounds,
    )
    first = dataclasses.replace(chunk, warmup=budget.warmup)
    latencies = {name: [] for name in calls}
    for round_index in range(rounds):
        for name, call in calls.items():
            latencies[name].append(time_calls(call, first if round_index == 0 else chunk))
    return {name: np.concatenate(parts) for name, parts in latencies.items()}


def measure_breakdowns(
    model: DLRM,
    batch_sizes: tuple[int, ...],
    budget: TimingBudget,
    seed: int,
    progress: Callable[[str], None] = print,
    rounds: int = 5,
) -> list[Breakdown]:
    """Times every stage, its call overhead and the end-to-end predict per batch size.

    The programs of one batch size are timed side by side in `rounds` interleaved rounds.
    """
    predictor = CompiledPredictor(model)
    programs = StagePrograms(model)
    breakdowns = []
    for index, batch_size in enumerate(batch_sizes):
        step = f"[{index + 1}/{len(batch_sizes)}] {model.config.name} batch {batch_size:>5}"
        progress(f"{step}: compiling the whole program and the {len(STAGES)} stages ...")
        batch = to_device(synthetic_batch(model.config, batch_size, seed=seed + batch_size))
        predictor.compile(batch_size)
        calls = {"end_to_end": lambda: predictor(batch)}  # noqa: B023
        for stage, (call, noop) in programs.calls(batch).items():
            calls[stage] = call
            calls[f"{stage}_call_overhead"] = noop
        progress(f"{step}: timing {len(calls)} programs in {rounds} interleaved rounds ...")
        stats = {
            name: LatencyStats.from_seconds(latencies)
            for name, latencies in time_interleaved(calls, budget, rounds).items()
        }
        overhead = sum(stats[f"{stage}_call_overhead"].p50_ms for stage in STAGES)
        breakdown = Breakdown(
            batch_size=batch_size,
            stage_ms={stage: stats[stage].p50_ms for stage in STAGES},
            end_to_end_ms=stats["end_to_end"].p50_ms,
            call_overhead_ms=overhead,
            stage_stats=stats,
        )
        breakdowns.append(breakdown)
        shares = ", ".join(f"{name} {share:.0%}" for name, share in breakdown.shares.items())
        progress(f"{step}: end to end {breakdown.end_to_end_ms:.3f} ms; {shares}")
    return breakdowns


def format_table(title: str, breakdowns: list[Breakdown]) -> str:
    """Shares of the end-to-end time per batch size, with the times they are shares of."""
    columns = (*STAGES, REST)
    header = (
        f"{'batch':>6}{'end-to-end ms':>15}"
        + "".join(f"{name:>13}" for name in columns)
        + f"{'sum stages ms':>15}{'calls ms':>10}{'FC/stages':>11}"
    )
    lines = [title, header, "-" * len(header)]
    for b in breakdowns:
        shares = b.shares
        lines.append(
            f"{b.batch_size:>6}{b.end_to_end_ms:>15.3f}"
            + "".join(f"{shares[name]:>13.1%}" for name in columns)
            + f"{sum(b.stage_ms.values()):>15.3f}{b.call_overhead_ms:>10.3f}"
            + f"{b.fc_share_of_stages:>11.1%}"
        )
    return "\n".join(lines)


def write_summaries(writer: SummaryWriter, breakdowns: list[Breakdown]) -> None:
    """Scalars with the batch size as the step: share/<stage>, time_ms/<stage>, and the rest."""
    for b in breakdowns:
        for name, share in b.shares.items():
            writer.scalar(f"share/{name}", share, b.batch_size)
        for stage in STAGES:
            writer.scalar(f"time_ms/{stage}", b.stage_ms[stage], b.batch_size)
        writer.scalar("time_ms/end_to_end", b.end_to_end_ms, b.batch_size)
        writer.scalar("time_ms/rest", b.rest_ms, b.batch_size)
        writer.scalar("time_ms/call_overhead", b.call_overhead_ms, b.batch_size)
        writer.scalar("share_of_stages/fc", b.fc_share_of_stages, b.batch_size)
        writer.scalar("share_of_stages/embedding", b.embedding_share_of_stages, b.batch_size)
    writer.flush()


def profile_end_to_end(
    model: DLRM, batch_sizes: tuple[int, ...], logdir: str, seed: int, calls_per_batch: int = 10
) -> None:
    """Writes a jax.profiler trace of `calls_per_batch` end-to-end calls per batch size.

    The trace lands in <logdir>/plugins/profile/<time>/, where TensorBoard's profile plugin finds
    it; each call is annotated "predict_b<B>", and XLA's per-operation events name the HLO ops.
    """
    predictor = CompiledPredictor(model, batch_sizes)
    batches = {
        size: to_device(synthetic_batch(model.config, size, seed=seed + size))
        for size in batch_sizes
    }
    for batch in batches.values():
        predictor(batch)  # warm
    with jax.profiler.trace(logdir):
        for size, batch in batches.items():
            for _ in range(calls_per_batch):
                with jax.profiler.TraceAnnotation(f"predict_b{size}"):
                    jax.block_until_ready(predictor(batch))
