"""The flags every benchmark binary shares, and what the binaries do alike before any work.

Defining a flag here defines it for every binary that imports this module; a binary defines only
the flags of its own measurement. `model_config()` turns --model, --override and
--embedding_lowering into a validated config, and `id_distributions(config)` turns --ids into each
table's id distribution (profile files read and checked), so a bad value fails before anything is
built.
"""

import dataclasses
import sys

import jax
from absl import app, flags

import configs
from recjax.inputs.id_distributions import UNIFORM, IdDistribution, parse_id_spec
from recjax.layers.embedding_bag import AUTO, LOWERINGS
from recjax.models.family import ModelConfig
from recjax.models.overrides import apply_overrides
from recjax.reporting import figures
from recjax.runtime.memory import GIB, InsufficientMemoryError, check_memory

# recjax measures the CPU backend; naming it also skips probing for absent accelerators.
CPU_PLATFORM = "cpu"

MODEL = flags.DEFINE_string(
    "model", "rmc2", f"Model preset, by name: one of {', '.join(configs.names())}."
)
SEED = flags.DEFINE_integer("seed", 0, "Seed of the parameters and the synthetic inputs.")
EMBEDDING_LOWERING = flags.DEFINE_enum(
    "embedding_lowering",
    None,
    [AUTO, *sorted(LOWERINGS)],
    "Embedding-bag lowering; default: the preset's own (auto: the native kernel when built, "
    "else the best pure-JAX form).",
)
HUGE_PAGES = flags.DEFINE_bool(
    "huge_pages",
    True,
    "Move the embedding tables into 2 MiB transparent huge pages after building them (fewer TLB "
    "misses on random rows); --nohuge_pages keeps 4 KiB pages.",
)
LOGDIR = flags.DEFINE_string(
    "logdir",
    None,
    "Where results.json and TensorBoard event files go; default runs/<benchmark>/<model>-<time>. "
    "A folder that already holds a run is never overwritten: the run goes into a fresh folder "
    "inside it.",
)
OVERRIDE = flags.DEFINE_multi_string(
    "override",
    [],
    "key=value: change one field of the preset's config (repeatable), e.g. "
    "--override=top_mlp=512,256,1 --override=interaction=dot; validated like the config itself.",
)

FIGURES = flags.DEFINE_bool(
    "figures",
    True,
    "At the end of the run, draw its figure: <logdir>/<benchmark>.png and .svg, and a TensorBoard "
    "image (see benchmarks.figures; benchmarks.machine has no figure). Needs matplotlib "
    "(pip install -e '.[plot]'); without it the run says so and goes on.",
)

IDS = flags.DEFINE_string(
    "ids",
    UNIFORM,
    "How synthetic inputs draw each table's ids: a default for every table, then any "
    "TABLE=DISTRIBUTION overrides, comma-separated; a distribution is uniform, zipf:ALPHA "
    "(ALPHA > 0, over a fixed random permutation of the rows) or trace:PATH (a stack-distance "
    "profile in the reference DLRM's dist_emb format; {table} and {index} in PATH stand for the "
    "table's name and 0-based position). E.g. --ids=zipf:1.05,rmc2_table_3=uniform.",
)


def _check_id_spec(value: str) -> bool:
    try:
        parse_id_spec(value)
    except ValueError as error:
        raise flags.ValidationError(f"--ids={value}: {error}") from error
    return True


flags.register_validator("ids", _check_id_spec)

MODEL_FLAGS = ("model", "seed", "embedding_lowering", "huge_pages", "override", "ids")


def model_config() -> ModelConfig:
    """The preset named by --model, with --override and --embedding_lowering applied.

    Raises app.UsageError naming the bad value and what is accepted.
    """
    try:
        config = configs.get(MODEL.value)
        config = apply_overrides(config, OVERRIDE.value)
        if EMBEDDING_LOWERING.value:
            config = dataclasses.replace(config, embedding_lowering=EMBEDDING_LOWERING.value)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    return config


def id_distributions(config: ModelConfig) -> dict[str, IdDistribution]:
    """--ids resolved for `config`'s tables: profiles read and range-checked before any work.

    Raises app.UsageError naming the bad value (for a profile file: the file, line and table).
    """
    try:
        return parse_id_spec(IDS.value).resolve(config)
    except ValueError as error:
        raise app.UsageError(f"--ids={IDS.value}: {error}") from error


def refuse_model_flags(binary: str) -> None:
    """For a binary that builds no model: refuse the model flags if any was given."""
    given = [f"--{name}" for name in MODEL_FLAGS if flags.FLAGS[name].present]
    if given:
        raise app.UsageError(
            f"benchmarks.{binary} measures the machine, not a model; {', '.join(given)} does not "
            "apply."
        )


def positive_integers(values: list[str]) -> bool:
    """Whether a comma-separated list flag holds at least one value, all positive integers."""
    return bool(values) and all(value.strip().isdigit() and int(value) > 0 for value in values)


def start_on_cpu() -> None:
    """Selects the CPU backend and makes progress lines show up at once, also when piped."""
    jax.config.update("jax_platforms", CPU_PLATFORM)
    sys.stdout.reconfigure(line_buffering=True)


def check_memory_or_exit(
    config: ModelConfig, max_batch_size: int, extra_parameter_copies: int = 0, extra_bytes: int = 0
) -> int:
    """The bytes the run needs; exits with the memory error if short, naming the smaller presets
    to try (`configs.smaller_presets`: e.g. dcnv2 for dcnv2-full, and the -tiny variant).

    `extra_parameter_copies` and `extra_bytes` count what the run holds beside the model (see
    `recjax.runtime.memory.check_memory`)."""
    smaller = configs.smaller_presets(config.name)
    try:
        return check_memory(
            config,
            max_batch_size,
            smaller,
            extra_parameter_copies=extra_parameter_copies,
            extra_bytes=extra_bytes,
        )
    except InsufficientMemoryError as error:
        sys.exit(f"error: {error}")


def print_model_header(
    config: ModelConfig, needed_bytes: int, lowering: str, lowering_note: str
) -> None:
    """The preset, its size and memory need, and the embedding-bag lowering that will run."""
    print(f"model:   {config.name}: {config.architecture_summary()}")
    print(
        f"         {config.parameter_bytes / GIB:.2f} GiB of parameters (needs about "
        f"{needed_bytes / GIB:.1f} GiB)"
    )
    print(f"         embedding-bag lowering: {lowering} ({lowering_note})")


def draw_figures(logdir: str, enabled: bool | None = None) -> None:
    """--figures (or `enabled`): the run's own figure beside its results; a note, not an error,
    when matplotlib is missing or the results cannot be drawn (the results are written either
    way)."""
    if not (FIGURES.value if enabled is None else enabled):
        return
    missing = figures.plotting_missing()
    if missing:
        print(f"figures: not drawn: {missing}")
        return
    try:
        written = figures.write_run_figures(logdir)
    except (figures.ResultsError, OSError) as error:
        print(f"figures: not drawn: {error}")
        return
    for path in written.files:
        print(f"figure:      {path}")
