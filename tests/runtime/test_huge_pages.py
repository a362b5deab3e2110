import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import configs
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.models.family import ModelConfig
from recjax.runtime import huge_pages, model_setup


def test_contents_survive_and_the_note_says_what_happened():
    array = jax.jit(lambda: jnp.arange(2**22, dtype=jnp.float32))()  # 16 MiB
    expected = np.arange(2**22, dtype=np.float32)
    note = huge_pages.back_with_huge_pages(array)
    assert isinstance(note, str) and note
    np.testing.assert_array_equal(np.asarray(array), expected)
    if huge_pages._thp_mode() in ("always", "madvise") and "collapsed" not in note:
        assert "MiB of the 16 MiB array now in 2 MiB pages" in note, note


def test_small_arrays_are_left_alone():
    assert "smaller than one huge page" in huge_pages.back_with_huge_pages(jnp.ones(16))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TablesOnlyConfig(ModelConfig):
    """A family of the contract's bare minimum: a sparse arch and nothing else (any dims)."""

    def build(self, rngs: nnx.Rngs) -> nnx.Module:
        return TablesOnly(self, rngs=rngs)


class TablesOnly(nnx.Module):
    def __init__(self, config: TablesOnlyConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.sparse_arch = EmbeddingCollection(
            config.tables, config.features, lowering=config.embedding_lowering, rngs=rngs
        )


def tables_only(*tables: TableConfig) -> TablesOnlyConfig:
    return TablesOnlyConfig(
        name="tables-only",
        tables=tables,
        features=tuple(FeatureConfig(table.name, table.name, capacity=1) for table in tables),
        dense_features=0,
        embedding_lowering="pooling_loop",
    )


def test_build_model_without_huge_pages_is_the_family_build():
    config = configs.get("rmc1-tiny")
    lines = []
    model, note = model_setup.build_model(config, seed=3, huge_pages=False, progress=lines.append)
    assert note == model_setup.SMALL_PAGES_NOTE
    assert len(lines) == 1 and lines[0].startswith("built the model in ")
    reference = config.build(nnx.Rngs(3))
    assert jax.tree.all(
        jax.tree.map(np.array_equal, nnx.state(model, nnx.Param), nnx.state(reference, nnx.Param))
    )


def test_build_model_moves_every_table_group_and_keeps_the_values():
    # Two (dim, dtype) groups: a 4 MiB buffer (two 2 MiB pages' worth) and a tiny one.
    config = tables_only(TableConfig("big", 16_384, 64), TableConfig("small", 10, 8))
    lines = []
    model, note = model_setup.build_model(config, seed=0, huge_pages=True, progress=lines.append)
    small = "huge pages not used: the array is smaller than one huge page"
    if huge_pages._thp_mode() in ("always", "madvise"):
        big_note, small_note = note.split("; ")
        assert big_note.startswith("d64_float32: ")
        assert small_note == f"d8_float32: {small}"
    else:  # every buffer got the same note: given once, without group names
        assert note.startswith("huge pages not used: transparent huge pages are")
    assert lines[1].startswith(f"tables: {note} (")
    reference = config.build(nnx.Rngs(0)).sparse_arch.table_buffers()
    buffers = model.sparse_arch.table_buffers()
    assert sorted(buffers) == ["d64_float32", "d8_float32"]
    for name, buffer in buffers.items():
        np.testing.assert_array_equal(np.asarray(buffer), np.asarray(reference[name]))


def test_one_note_for_buffers_that_share_it():
    buffers = {"d4_float32": jnp.ones(16), "d8_float32": jnp.ones(32)}
    assert model_setup.back_tables_with_huge_pages(buffers) == (
        huge_pages.back_with_huge_pages(jnp.ones(16))
    )
