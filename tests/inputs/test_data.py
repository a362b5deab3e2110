import numpy as np
import pytest

import configs
from recjax.inputs.data import Batch, check_batch_shapes, describe_out_of_range_ids, synthetic_batch


def test_synthetic_batch_is_deterministic_and_in_range():
    config = configs.get("rmc2-tiny")
    first, second = synthetic_batch(config, 16, seed=3), synthetic_batch(config, 16, seed=3)
    np.testing.assert_array_equal(first.sparse_ids, second.sparse_ids)
    np.testing.assert_array_equal(first.dense, second.dense)
    assert not np.array_equal(first.sparse_ids, synthetic_batch(config, 16, seed=4).sparse_ids)
    assert first.dense.shape == (16, 256) and first.dense.dtype == np.float32
    assert first.sparse_ids.shape == (16, 32, 120) and first.sparse_ids.dtype == np.int32
    assert first.sparse_ids.min() >= 0 and first.sparse_ids.max() < 1000


def test_ids_cover_each_tables_own_range():
    config = configs.get("rmc1")  # 4,000,000 rows per table
    ids = synthetic_batch(config, 64, seed=0).sparse_ids
    assert ids.max() > 3_000_000, "ids should spread over the whole table"
    # Uniform ids: the mean of 40,960 draws from [0, 4e6) is 2e6 within a few standard errors.
    assert abs(ids.mean() - 2e6) < 5 * 4e6 / np.sqrt(12 * ids.size)


def test_check_batch_shapes_names_the_problem():
    config = configs.get("rmc2-tiny")
    good = synthetic_batch(config, 2, seed=0)
    check_batch_shapes(config, good)
    with pytest.raises(ValueError, match=r"shape \[B, 256\]; got \[2, 255\]"):
        check_batch_shapes(config, Batch(good.dense[:, :255], good.sparse_ids))
    with pytest.raises(ValueError, match=r"\[2, 32, 120\]; got \[2, 32, 119\]"):
        check_batch_shapes(config, Batch(good.dense, good.sparse_ids[:, :, :119]))
    with pytest.raises(ValueError, match="int32; got int64"):
        check_batch_shapes(config, Batch(good.dense, good.sparse_ids.astype(np.int64)))
    with pytest.raises(ValueError, match="positive"):
        synthetic_batch(config, 0, seed=0)


def test_describe_out_of_range_ids():
    config = configs.get("rmc3-tiny")
    ids = synthetic_batch(config, 4, seed=0).sparse_ids
    ids[2, 7, 3] = -5
    ids[3, 1, 0] = 1000
    message = describe_out_of_range_ids(config, ids)
    assert message.startswith("2 sparse id(s) out of range; the first is -5 at [sample 2, table 7")
    assert "[0, 1000)" in message
