"""Building a preset's model for a benchmark: its tables allocated once, and in huge pages.

Works for every family through the contract: `config.build(rngs)` makes the module, and its
`sparse_arch.table_buffers()` are the stacked embedding tables, one [N, D] buffer per (dim, dtype)
group.
"""

import time
from collections.abc import Callable, Mapping

import jax
from flax import nnx

from recjax.models.family import ModelConfig
from recjax.runtime.huge_pages import back_with_huge_pages

SMALL_PAGES_NOTE = "4 KiB pages (huge pages not requested)"


def back_tables_with_huge_pages(buffers: Mapping[str, jax.Array]) -> str:
    """Moves every table buffer into huge pages; one note for all of them.

    One buffer (every DLRM preset): its note as is. Several: the notes they share once, and the
    others prefixed with their group, e.g. "d64_float32: 512 MiB of the 512 MiB array now in 2 MiB
    pages; d16_float32: huge pages not used: the array is smaller than one huge page".
    """
    notes = {name: back_with_huge_pages(buffer) for name, buffer in buffers.items()}
    distinct = set(notes.values())
    if len(distinct) == 1:
        return distinct.pop()
    return "; ".join(f"{name}: {note}" for name, note in notes.items())


def build_model(
    config: ModelConfig, seed: int, huge_pages: bool, progress: Callable[[str], None] = print
) -> tuple[nnx.Module, str]:
    """The model of any family with parameters from `seed`, and a note on where its tables live."""
    start = time.perf_counter()
    model = config.build(nnx.Rngs(seed))
    progress(f"built the model in {time.perf_counter() - start:.1f} s")
    if not huge_pages:
        return model, SMALL_PAGES_NOTE
    start = time.perf_counter()
    note = back_tables_with_huge_pages(model.sparse_arch.table_buffers())
    progress(f"tables: {note} ({time.perf_counter() - start:.1f} s)")
    return model, note
