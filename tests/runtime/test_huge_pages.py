import jax
import jax.numpy as jnp
import numpy as np

from recjax.runtime import huge_pages


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
