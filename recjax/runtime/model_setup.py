"""Building a preset's model for a benchmark: its tables allocated once, and in huge pages."""

import time
from collections.abc import Callable

from flax import nnx

from recjax.models.dlrm import DLRM, DLRMConfig
from recjax.runtime.huge_pages import back_with_huge_pages

HUGE_PAGES_FLAG_HELP = (
    "Move the embedding tables into 2 MiB transparent huge pages after building them "
    "(recjax/huge_pages.py: fewer TLB misses on random rows); --nohuge_pages keeps 4 KiB pages."
)


def build_model(
    config: DLRMConfig, seed: int, huge_pages: bool, progress: Callable[[str], None] = print
) -> tuple[DLRM, str]:
    """The model with parameters from `seed`, and a note on where its tables live."""
    start = time.perf_counter()
    model = DLRM(config, rngs=nnx.Rngs(seed))
    progress(f"built the model in {time.perf_counter() - start:.1f} s")
    if not huge_pages:
        return model, "4 KiB pages (--nohuge_pages)"
    start = time.perf_counter()
    note = back_with_huge_pages(model.sparse_arch.weight[...])
    progress(f"tables: {note} ({time.perf_counter() - start:.1f} s)")
    return model, note
