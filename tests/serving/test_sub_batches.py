import numpy as np
import pytest

from recjax.serving.query_sizes import QuerySizeDistribution
from recjax.serving.server import Tasks, make_schedule
from recjax.serving.sub_batches import compiled_sizes, pad_to, padded_sizes, split_query


def test_padded_sizes_are_powers_of_two_and_the_sub_batch():
    assert padded_sizes(1) == (1,)
    assert padded_sizes(64) == (1, 2, 4, 8, 16, 32, 64)
    assert padded_sizes(100) == (1, 2, 4, 8, 16, 32, 64, 100)


def test_compiled_sizes_stop_at_the_largest_query():
    assert compiled_sizes(256, 200) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert compiled_sizes(256, 100) == (1, 2, 4, 8, 16, 32, 64, 128)
    assert compiled_sizes(64, 1024) == padded_sizes(64)


def test_split_and_pad():
    assert split_query(165, 64) == [64, 64, 37]
    assert split_query(128, 64) == [64, 64]
    assert split_query(5, 64) == [5]
    assert [pad_to(n, padded_sizes(64)) for n in (1, 3, 37, 64)] == [1, 4, 64, 64]
    with pytest.raises(ValueError, match="No compiled size holds 65 items"):
        pad_to(65, padded_sizes(64))
    with pytest.raises(ValueError, match="sub_batch >= 1"):
        split_query(5, 0)


def test_tasks_of_a_schedule_and_their_padding():
    schedule = make_schedule(100.0, 1.0, 4, QuerySizeDistribution.parse("fixed:165"), 1024, seed=0)
    tasks = Tasks.split(schedule, 64, padded_sizes(64))
    assert tasks.query.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert tasks.items.tolist() == [64, 64, 37] * 4
    assert tasks.padded.tolist() == [64, 64, 64] * 4
    assert tasks.first.tolist() == [0, 3, 6, 9, 12]
    # 192 rows run per 165 items: 16.4 % padding.
    assert tasks.padded.sum() / tasks.items.sum() - 1 == pytest.approx(27 / 165)
    np.testing.assert_array_equal(np.diff(tasks.first), [3, 3, 3, 3])
