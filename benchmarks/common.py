"""What every benchmark binary does alike: run on the CPU, check memory first, end with paths."""

import dataclasses
import sys

import jax

import configs
from recjax.models.dlrm import DLRMConfig
from recjax.runtime.memory import GIB, InsufficientMemoryError, check_memory

# recjax measures the CPU backend; naming it also skips probing for absent accelerators.
CPU_PLATFORM = "cpu"


def start_on_cpu() -> None:
    """Selects the CPU backend and makes progress lines show up at once, also when piped."""
    jax.config.update("jax_platforms", CPU_PLATFORM)
    sys.stdout.reconfigure(line_buffering=True)


def check_memory_or_exit(
    config: DLRMConfig, max_batch_size: int, extra_parameter_copies: int = 0
) -> int:
    """The bytes the run needs; exits with the memory error (naming smaller presets) if short."""
    smaller = [name for name in configs.names() if name.startswith(config.name + "-")]
    try:
        return check_memory(
            config, max_batch_size, smaller, extra_parameter_copies=extra_parameter_copies
        )
    except InsufficientMemoryError as error:
        sys.exit(f"error: {error}")


def print_output_paths(results_path: str, logdir: str) -> None:
    print(f"results:     {results_path}")
    print(f"tensorboard: tensorboard --logdir {logdir}")


def positive_integers(values: list[str]) -> bool:
    """Whether a comma-separated list flag holds at least one value, all positive integers."""
    return bool(values) and all(value.strip().isdigit() and int(value) > 0 for value in values)


def preset(name: str, embedding_lowering: str | None) -> DLRMConfig:
    """The preset called `name`, with its embedding lowering overridden when one is given."""
    config = configs.get(name)
    if embedding_lowering:
        config = dataclasses.replace(config, embedding_lowering=embedding_lowering)
    return config


def print_model_header(
    config: DLRMConfig, needed_bytes: int, lowering: str, lowering_note: str
) -> None:
    """The preset, its size and memory need, and the embedding-bag lowering that will run."""
    print(f"model:   {config.name}: {config.architecture_summary()}")
    print(
        f"         {config.parameter_bytes / GIB:.2f} GiB of parameters (needs about "
        f"{needed_bytes / GIB:.1f} GiB)"
    )
    print(f"         embedding-bag lowering: {lowering} ({lowering_note})")
