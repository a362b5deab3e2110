"""Duplicates stay duplicates: a bag holding an id twice sums that row twice, in every lowering."""

import jax
import numpy as np
import pytest

from recjax.layers.embedding_bag import LOWERINGS
from tests.layers.test_embedding_bag import OFFSETS, ROWS, numpy_bags, skip_unless_available


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
@pytest.mark.parametrize(("weighted", "mean"), [(False, False), (True, False), (False, True)])
def test_a_repeated_id_is_summed_as_often_as_it_appears(lowering, weighted, mean):
    skip_unless_available(lowering)
    rng = np.random.default_rng(0)
    stacked = rng.standard_normal((sum(ROWS), 8)).astype(np.float32)
    # [B=2, T=3, C=4]: bags of one id four times, an id twice among others, and no repeats.
    ids = np.asarray(
        [
            [[3, 3, 3, 3], [6, 1, 6, 0], [299, 0, 299, 299]],
            [[0, 1, 2, 3], [5, 5, 5, 2], [7, 8, 9, 7]],
        ],
        np.int32,
    )
    lengths = np.asarray([[4, 4, 3], [4, 2, 4]], np.int32)  # the padding repeats too: ignored
    weights = rng.random(ids.shape).astype(np.float32) if weighted else None

    def pool(stacked, ids, lengths, weights):
        return LOWERINGS[lowering](stacked, ids, lengths, weights, row_offsets=OFFSETS, mean=mean)

    got = np.asarray(jax.jit(pool)(stacked, ids, lengths, weights))
    expected = numpy_bags(stacked, ids, lengths, weights, mean)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    if not weighted and not mean:  # by hand: row 3 of table 0 four times, and so on
        np.testing.assert_allclose(got[0, 0], 4 * stacked[3], rtol=1e-6)
        table_1 = stacked[50:57]
        np.testing.assert_allclose(got[0, 1], 2 * table_1[6] + table_1[1] + table_1[0], rtol=1e-6)
        np.testing.assert_allclose(got[0, 2], 2 * stacked[57 + 299] + stacked[57], rtol=1e-6)
        np.testing.assert_allclose(got[1, 1], 2 * stacked[50 + 5], rtol=1e-6)
