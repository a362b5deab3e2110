"""Memory: what the machine has, what a preset needs, and what a run used at its peak."""

import os
import resource

import jax
import numpy as np

from recjax.inputs.synthetic import abstract_features
from recjax.models.family import ModelConfig

GIB = 2**30

# Room for the Python process, the XLA runtime and compiled programs, beyond parameters and batches
# (rmc3, with 2.6 GB of parameters and small activations, peaked at 3.70 GiB).
RUNTIME_OVERHEAD_BYTES = GIB

# Initializing one table holds its random bits, its values and the block being written at once:
# rmc1 (512 MB tables) peaked at 6.05 GiB, 1.1 GiB above an estimate that counted one block.
INIT_BLOCK_COPIES = 3


class InsufficientMemoryError(RuntimeError):
    """A preset needs more memory than the machine has available."""


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (memory that can be had without swapping)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """The peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def batch_input_bytes(config: ModelConfig, batch_size: int) -> int:
    """Bytes of one batch of inputs (dense, ids, lengths and weights if any; no labels)."""
    return sum(
        int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
        for leaf in jax.tree.leaves(abstract_features(config, batch_size))
    )


def _float32_bytes(num_rows: int, dim: int) -> int:
    return num_rows * dim * np.dtype(np.float32).itemsize


def estimated_peak_bytes(config: ModelConfig, max_batch_size: int) -> int:
    """Parameters, the largest table's initialization, the largest batch and its activations.

    The activation term counts every embedding row a batch gathers at full capacity
    (B x `config.embedding_bytes_per_sample`, one [B, T, C, D] gather per bag): the `gather_sum`
    lowering materializes it, the others need less, so this errs on the safe side. A table of
    another dtype is initialized (and quantized) from float32 values, and its gathered rows are
    widened to float32 [B, T, C, D] too: both terms count float32 bytes for it, beside its stored
    bytes.
    """
    largest_table = max(_float32_bytes(table.num_rows, table.dim) for table in config.tables)
    initialization = INIT_BLOCK_COPIES * largest_table
    batch_inputs = batch_input_bytes(config, max_batch_size)
    widened = sum(
        feature.capacity * _float32_bytes(1, config.table(feature.table).dim)
        for feature in config.features
        if config.table(feature.table).dtype != "float32"
    )
    activations = max_batch_size * (config.embedding_bytes_per_sample + widened)
    return (
        config.parameter_bytes
        + initialization
        + batch_inputs
        + activations
        + RUNTIME_OVERHEAD_BYTES
    )


def sharding_note(config: ModelConfig, available_bytes: int) -> str:
    """A sentence for a memory error when the parameters alone exceed the memory (else "")."""
    if config.parameter_bytes <= available_bytes:
        return ""
    return (
        " Its parameters alone exceed this machine's memory: the full model needs its embedding "
        "tables sharded over several machines, which recjax does not do yet (a later issue adds "
        "sharding)."
    )


def check_memory(
    config: ModelConfig,
    max_batch_size: int,
    smaller_presets: list[str],
    available_bytes: int | None = None,
    extra_parameter_copies: int = 0,
    extra_bytes: int = 0,
) -> int:
    """The bytes the run needs; raises InsufficientMemoryError, naming both, if not available.

    `extra_parameter_copies` counts further full copies of the parameters held beside the model's
    own (1 for the PyTorch baseline, whose model holds its own tables); `extra_bytes` other memory
    held beside it (a peer's float32 copy of a quantized model's weights, say).
    """
    if extra_parameter_copies < 0:
        raise ValueError(f"extra_parameter_copies must be >= 0; got {extra_parameter_copies}.")
    if extra_bytes < 0:
        raise ValueError(f"extra_bytes must be >= 0; got {extra_bytes}.")
    needed = (
        estimated_peak_bytes(config, max_batch_size)
        + extra_parameter_copies * config.parameter_bytes
        + extra_bytes
    )
    available = available_memory_bytes() if available_bytes is None else available_bytes
    if needed > available:
        copies = f", held {1 + extra_parameter_copies} times" if extra_parameter_copies else ""
        if extra_bytes:
            copies += f", and {extra_bytes / GIB:.1f} GiB beside them"
        suggestion = (
            f" Try a smaller preset: {', '.join(smaller_presets)}." if smaller_presets else ""
        )
        suggestion += sharding_note(config, available)
        raise InsufficientMemoryError(
            f"{config.name} at batch size {max_batch_size} needs about {needed / GIB:.1f} GiB "
            f"({config.parameter_bytes / GIB:.1f} GiB of parameters{copies}), but only "
            f"{available / GIB:.1f} GiB of memory is available.{suggestion}"
        )
    return needed
