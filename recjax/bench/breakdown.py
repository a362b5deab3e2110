"""Operator breakdown: where compiled inference time goes, stage by stage, per batch size.

Method: the model's forward pass is cut into the named stages its config gives
(`config.stages()`, see `recjax.models.family.Stage`). Each stage is compiled as its own program,
a pure function of the parameters it reads (passed as arguments, never closed over) and of its
inputs, and timed on its real inputs: the batch, or the outputs of the stages before it, computed
once on the device before timing. For a DLRM the stages are:

    embedding    (kind "embedding")    batch -> pooled [B, T, D]
    bottom_mlp   (kind "fc")           batch (dense [B, F]) -> [B, H]
    interaction  (kind "interaction")  [B, H], [B, T, D] -> [B, W]
    top_mlp      (kind "fc")           [B, W] -> {"click": logits [B]}

Another family names its own stages; the last one always returns the heads' logits. Which
parameters a stage reads is found by tracing it once (the parameter leaves its program uses), so
the embedding program takes the tables and an MLP program only its layers.

The stage programs, the end-to-end program and the stages' no-op twins (below) are timed side by
side, in interleaved rounds, so that a slow spell of a shared machine falls on all of them alike.
The end-to-end time is that of `CompiledPredictor`, the program `benchmarks.latency` times: all
stages in one program plus the heads' sigmoid, the input range check and its one-scalar
read-back. A stage's share is its median time over the end-to-end median; "rest" is what is left,
1 - sum of the stage shares. The rest is not an operator: it is the sigmoid and the range check,
plus the differences between running the stages apart and together. Those run both ways: every
stage program pays its own call overhead (dispatch, argument handling, the wait for the result),
which the end-to-end program pays once, and XLA fuses across stage boundaries in the whole program
(DLRM's "cat" interaction becomes a few copies or vanishes into the top MLP's first matrix
multiply). So the rest can be negative, most at batch 1, where the call overhead is a large part of
each stage. Each stage's call overhead is measured on its own (a compiled program taking the
stage's arguments and doing nothing) and their sum is reported beside the shares, so a reader can
see how much of the stage times it explains.

The shares of the stages of one kind are also summed over the sum of the stage times: kind "fc"
gives the paper's "FC share of operators", kind "embedding" its "SparseLengthsSum share".
"""

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recjax.bench.timing import LatencyStats, TimingBudget, time_calls
from recjax.inputs.id_distributions import IdDistribution
from recjax.inputs.synthetic import abstract_features, synthetic_features, to_device
from recjax.models.family import STAGE_KINDS, Stage
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.inference import CompiledPredictor

BATCH = "batch"  # a stage input: the `Features` batch itself
END_TO_END = "end_to_end"
REST = "rest"
CALL_OVERHEAD_SUFFIX = "_call_overhead"
RESERVED_NAMES = (BATCH, END_TO_END, REST)
# The shares of a breakdown sum to 1 up to float64 rounding of a few additions.
SHARE_SUM_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class Breakdown:
    """The median times of one batch size, in milliseconds, and the shares derived from them.

    Attributes:
      batch_size: B.
      stage_kinds: the kind of each stage ("embedding", "fc", ...), keyed by stage name in the
        model's order; the shares and the table follow this order.
      stage_ms: median time of each stage's own compiled program, keyed by stage name.
      end_to_end_ms: median time of the whole compiled predict call.
      call_overhead_ms: the sum over the stages of the median time of a compiled program that
        takes the stage's arguments and does nothing: the fixed cost that the stage programs pay
        once each and the end-to-end program pays once in all.
      stage_stats: full statistics per stage, per no-op twin and for "end_to_end" (for the JSON
        results).
    """

    batch_size: int
    stage_kinds: dict[str, str]
    stage_ms: dict[str, float]
    end_to_end_ms: float
    call_overhead_ms: float
    stage_stats: dict[str, LatencyStats] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.stage_kinds:
            raise ValueError("A breakdown needs at least one stage; got none.")
        unknown = {name: kind for name, kind in self.stage_kinds.items() if kind not in STAGE_KINDS}
        if unknown:
            raise ValueError(f"Unknown stage kinds {unknown}; expected kinds from {STAGE_KINDS}.")
        if set(self.stage_ms) != set(self.stage_kinds):
            raise ValueError(
                f"Need a time for each stage {self.stages}; got {sorted(self.stage_ms)}."
            )
        if self.end_to_end_ms <= 0 or min(self.stage_ms.values()) < 0:
            raise ValueError(
                f"Times must be non-negative and the end-to-end time positive; got stages "
                f"{self.stage_ms}, end to end {self.end_to_end_ms}."
            )

    @property
    def stages(self) -> tuple[str, ...]:
        """The stage names, in the model's order."""
        return tuple(self.stage_kinds)

    @property
    def shares(self) -> dict[str, float]:
        """Share of the end-to-end time per stage, plus "rest" (may be negative); sums to 1."""
        shares = {stage: self.stage_ms[stage] / self.end_to_end_ms for stage in self.stages}
        shares[REST] = 1.0 - sum(shares.values())
        return shares

    @property
    def rest_ms(self) -> float:
        return self.end_to_end_ms - sum(self.stage_ms.values())

    def share_of_stages(self, kind: str) -> float:
        """The stages of `kind` over the sum of all stages (0 if the model has none of it)."""
        if kind not in STAGE_KINDS:
            raise ValueError(f"Unknown stage kind {kind!r}; expected one of {STAGE_KINDS}.")
        of_kind = sum(self.stage_ms[name] for name, k in self.stage_kinds.items() if k == kind)
        return of_kind / sum(self.stage_ms.values())

    @property
    def fc_share_of_stages(self) -> float:
        """The "fc" stages over the sum of the stages: the paper's "FC share of operators"."""
        return self.share_of_stages("fc")

    @property
    def embedding_share_of_stages(self) -> float:
        """The "embedding" stages over the sum of the stages: the paper's "SparseLengthsSum
        share"."""
        return self.share_of_stages("embedding")

    @property
    def dominant_stage(self) -> str:
        return max(self.stages, key=lambda stage: self.stage_ms[stage])

    def to_json(self) -> dict[str, object]:
        return {
            "batch_size": self.batch_size,
            "end_to_end_ms": self.end_to_end_ms,
            "stage_kinds": dict(self.stage_kinds),
            "stage_ms": dict(self.stage_ms),
            "rest_ms": self.rest_ms,
            "call_overhead_ms": self.call_overhead_ms,
            "shares": self.shares,
            "fc_share_of_stages": self.fc_share_of_stages,
            "embedding_share_of_stages": self.embedding_share_of_stages,
            "stats": {name: dataclasses.asdict(stats) for name, stats in self.stage_stats.items()},
        }


def check_stages(model_name: str, stages: Sequence[Stage]) -> None:
    """Raises ValueError unless the stages are non-empty, uniquely named, and each reads only the
    batch and stages before it."""
    if not stages:
        raise ValueError(f"{model_name}: config.stages() returned no stages.")
    seen = []
    for stage in stages:
        if stage.name in RESERVED_NAMES or stage.name.endswith(CALL_OVERHEAD_SUFFIX):
            raise ValueError(
                f"{model_name}: stage name {stage.name!r} is reserved; a stage may not be named "
                f"{RESERVED_NAMES} or end in {CALL_OVERHEAD_SUFFIX!r}."
            )
        if stage.name in seen:
            raise ValueError(f"{model_name}: two stages are named {stage.name!r}.")
        unknown = [name for name in stage.inputs if name != BATCH and name not in seen]
        if unknown:
            raise ValueError(
                f"{model_name}: stage {stage.name!r} reads {unknown}, which are not earlier "
                f"stages; its inputs must be {BATCH!r} or among {seen}."
            )
        seen.append(stage.name)


def _parameters_read(
    graphdef: nnx.GraphDef, params: nnx.State, stage: Stage, inputs: Sequence[object]
) -> set[tuple]:
    """The paths of the parameter leaves that `stage` reads: those its traced program uses."""

    def function(params, *inputs):
        return stage.apply(nnx.merge(graphdef, params), *inputs)

    jaxpr = jax.make_jaxpr(function)(params, *inputs).jaxpr
    used = {id(var) for eqn in jaxpr.eqns for var in eqn.invars}
    used |= {id(var) for var in jaxpr.outvars}
    leaves, treedef = jax.tree.flatten(params)
    is_read = [id(var) in used for var in jaxpr.invars[: len(leaves)]]
    indices = jax.tree.unflatten(treedef, list(range(len(leaves))))
    return {path for path, index in nnx.to_flat_state(indices) if is_read[index.get_value()]}


@dataclasses.dataclass(frozen=True)
class StageProgram:
    """One stage as a jitted pure function of the parameters it reads and of its inputs.

    Attributes:
      stage: the config's stage.
      function: jitted (params, *inputs) -> the stage's output.
      params: the parameters the stage reads (a subset of the model's `nnx.split` state).
    """

    stage: Stage
    function: Callable[..., object]
    params: nnx.State

    def __call__(self, *inputs: object) -> object:
        return self.function(self.params, *inputs)

    def compiled_calls(self, *inputs: object) -> tuple[Callable[[], object], Callable[[], object]]:
        """Compiles the stage for these inputs' shapes.

        Returns (a call running the stage on `inputs`, a call of a compiled program that takes the
        same arguments and does nothing: the stage's fixed call cost).
        """
        arguments = (self.params, *inputs)
        compiled = self.function.lower(*arguments).compile()
        return functools.partial(compiled, *arguments), _noop_call(arguments)


def _stage_program(model: nnx.Module, stage: Stage, paths: set[tuple]) -> StageProgram:
    graphdef, params, others = nnx.split(model, lambda path, _: path in paths, ...)
    # The parameters the stage does not read enter its trace as shapes only: no data is captured.
    absent = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), others)

    def function(params, *inputs):
        return stage.apply(nnx.merge(graphdef, params, absent), *inputs)

    return StageProgram(stage, jax.jit(function), params)


class StagePrograms:
    """The stages of a model (`config.stages()`) as separately compiled programs.

    Each program takes, as arguments, only the parameters its stage reads. The wiring of the
    stages and the heads of the last one are checked on abstract inputs when this is built.

    Example:
        >>> programs = StagePrograms(model)
        >>> programs["embedding"](batch)      # the stage run on its own
        >>> calls = programs.calls(batch)     # {stage: (call on real inputs, its no-op twin)}
    """

    def __init__(self, model: nnx.Module):
        self.config = model.config
        self.stages = tuple(self.config.stages())
        check_stages(self.config.name, self.stages)
        graphdef, params = nnx.split(model)
        values = {BATCH: abstract_features(self.config, 1)}
        self.programs: dict[str, StageProgram] = {}
        for stage in self.stages:
            inputs = [values[name] for name in stage.inputs]
            paths = _parameters_read(graphdef, params, stage, inputs)
            program = _stage_program(model, stage, paths)
            values[stage.name] = jax.eval_shape(program.function, program.params, *inputs)
            self.programs[stage.name] = program
        self._check_heads(values[self.stages[-1].name])

    def _check_heads(self, output: object) -> None:
        heads = tuple(self.config.heads)
        shapes = jax.tree.map(lambda leaf: tuple(leaf.shape), output)
        if not (
            isinstance(output, dict)
            and set(output) == set(heads)
            and all(shape == (1,) for shape in shapes.values())
        ):
            raise ValueError(
                f"{self.config.name}: the last stage {self.stages[-1].name!r} must return the "
                f"heads' logits {{head: [B]}} for heads {heads}; at batch 1 it returned {shapes}."
            )

    @property
    def stage_kinds(self) -> dict[str, str]:
        return {stage.name: stage.kind for stage in self.stages}

    def __getitem__(self, name: str) -> StageProgram:
        if name not in self.programs:
            raise KeyError(f"{self.config.name} has no stage {name!r}; its stages: {self.stages}.")
        return self.programs[name]

    def calls(self, batch) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
        """Compiles every stage for this batch's size, in order.

        Each stage's inputs (the batch or earlier stages' outputs) are computed once on the device
        here, before any timing. Returns, per stage, (a call running the stage on its real inputs,
        a call of a compiled program that takes the same arguments and does nothing: the stage's
        fixed call cost).
        """
        values = {BATCH: batch}
        calls = {}
        for stage in self.stages:
            call, noop = self.programs[stage.name].compiled_calls(
                *(values[name] for name in stage.inputs)
            )
            values[stage.name] = jax.block_until_ready(call())
            calls[stage.name] = (call, noop)
        return calls


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
    model: nnx.Module,
    batch_sizes: tuple[int, ...],
    budget: TimingBudget,
    seed: int,
    progress: Callable[[str], None] = print,
    rounds: int = 5,
    ids: Mapping[str, IdDistribution] | None = None,
) -> list[Breakdown]:
    """Times every stage, its call overhead and the end-to-end predict per batch size.

    The programs of one batch size are timed side by side in `rounds` interleaved rounds; `ids`
    gives each table's id distribution (default uniform).
    """
    predictor = CompiledPredictor(model)
    programs = StagePrograms(model)
    stages = programs.stage_kinds
    breakdowns = []
    for index, batch_size in enumerate(batch_sizes):
        step = f"[{index + 1}/{len(batch_sizes)}] {model.config.name} batch {batch_size:>5}"
        progress(f"{step}: compiling the whole program and the {len(stages)} stages ...")
        batch = to_device(
            synthetic_features(model.config, batch_size, seed=seed + batch_size, ids=ids)
        )
        predictor.compile(batch_size)
        calls = {END_TO_END: lambda: predictor(batch)}  # noqa: B023
        for stage, (call, noop) in programs.calls(batch).items():
            calls[stage] = call
            calls[stage + CALL_OVERHEAD_SUFFIX] = noop
        progress(f"{step}: timing {len(calls)} programs in {rounds} interleaved rounds ...")
        stats = {
            name: LatencyStats.from_seconds(latencies)
            for name, latencies in time_interleaved(calls, budget, rounds).items()
        }
        breakdown = Breakdown(
            batch_size=batch_size,
            stage_kinds=stages,
            stage_ms={stage: stats[stage].p50_ms for stage in stages},
            end_to_end_ms=stats[END_TO_END].p50_ms,
            call_overhead_ms=sum(stats[stage + CALL_OVERHEAD_SUFFIX].p50_ms for stage in stages),
            stage_stats=stats,
        )
        breakdowns.append(breakdown)
        shares = ", ".join(f"{name} {share:.0%}" for name, share in breakdown.shares.items())
        progress(f"{step}: end to end {breakdown.end_to_end_ms:.3f} ms; {shares}")
    return breakdowns


def format_table(title: str, breakdowns: list[Breakdown]) -> str:
    """Shares of the end-to-end time per batch size, with the times they are shares of.

    One column per stage (in the model's order) and one for the rest; the breakdowns must be of
    one model.
    """
    stages = breakdowns[0].stages if breakdowns else ()
    if any(b.stages != stages for b in breakdowns):
        raise ValueError(
            f"The breakdowns of one table must share their stages; got "
            f"{sorted({b.stages for b in breakdowns})}."
        )
    widths = {name: max(13, len(name) + 2) for name in (*stages, REST)}
    header = (
        f"{'batch':>6}{'end-to-end ms':>15}"
        + "".join(f"{name:>{width}}" for name, width in widths.items())
        + f"{'sum stages ms':>15}{'calls ms':>10}{'FC/stages':>11}"
    )
    lines = [title, header, "-" * len(header)]
    for b in breakdowns:
        shares = b.shares
        lines.append(
            f"{b.batch_size:>6}{b.end_to_end_ms:>15.3f}"
            + "".join(f"{shares[name]:>{width}.1%}" for name, width in widths.items())
            + f"{sum(b.stage_ms.values()):>15.3f}{b.call_overhead_ms:>10.3f}"
            + f"{b.fc_share_of_stages:>11.1%}"
        )
    return "\n".join(lines)


def column_notes(stage_kinds: dict[str, str]) -> str:
    """What the table's last two columns are, for the stages of this model."""
    fc = [name for name, kind in stage_kinds.items() if kind == "fc"]
    fc_stages = " + ".join(fc) if fc else "no stage (the model has no stage of kind fc)"
    return (
        f"FC/stages: {fc_stages} over the sum of the stage times (the paper's FC share). "
        f"calls ms: the fixed call cost of the {len(stage_kinds)} stage programs together "
        "(programs taking the same arguments and doing nothing), which end to end pays once."
    )


def write_summaries(writer: SummaryWriter, breakdowns: list[Breakdown]) -> None:
    """Scalars with the batch size as the step: share/<stage>, time_ms/<stage>, and the rest."""
    for b in breakdowns:
        for name, share in b.shares.items():
            writer.scalar(f"share/{name}", share, b.batch_size)
        for stage in b.stages:
            writer.scalar(f"time_ms/{stage}", b.stage_ms[stage], b.batch_size)
        writer.scalar(f"time_ms/{END_TO_END}", b.end_to_end_ms, b.batch_size)
        writer.scalar(f"time_ms/{REST}", b.rest_ms, b.batch_size)
        writer.scalar("time_ms/call_overhead", b.call_overhead_ms, b.batch_size)
        writer.scalar("share_of_stages/fc", b.fc_share_of_stages, b.batch_size)
        writer.scalar("share_of_stages/embedding", b.embedding_share_of_stages, b.batch_size)
    writer.flush()


def profile_end_to_end(
    model: nnx.Module,
    batch_sizes: tuple[int, ...],
    logdir: str,
    seed: int,
    calls_per_batch: int = 10,
    ids: Mapping[str, IdDistribution] | None = None,
) -> None:
    """Writes a jax.profiler trace of `calls_per_batch` end-to-end calls per batch size.

    The trace lands in <logdir>/plugins/profile/<time>/, where TensorBoard's profile plugin finds
    it; each call is annotated "predict_b<B>", and XLA's per-operation events name the HLO ops.
    """
    predictor = CompiledPredictor(model, batch_sizes)
    batches = {
        size: to_device(synthetic_features(model.config, size, seed=seed + size, ids=ids))
        for size in batch_sizes
    }
    for batch in batches.values():
        predictor(batch)  # warm
    with jax.profiler.trace(logdir):
        for size, batch in batches.items():
            for _ in range(calls_per_batch):
                with jax.profiler.TraceAnnotation(f"predict_b{size}"):
                    jax.block_until_ready(predictor(batch))
