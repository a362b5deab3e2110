"""Long-tailed synthetic lengths, features that share lengths, and the checks that go with them."""

import dataclasses

import numpy as np
import pytest

from recjax.inputs.checks import describe_invalid_inputs, inputs_valid
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.inputs.synthetic import lognormal_lengths, synthetic_features
from recjax.models.family import ModelConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inputs(ModelConfig):
    """Only tables and features: synthetic inputs and checks need nothing else."""


INPUTS = Inputs(
    name="sequences",
    tables=(TableConfig("items", 50, 4), TableConfig("categories", 7, 4)),
    features=(
        FeatureConfig("candidate", "items", 1),
        FeatureConfig(
            "clicked",
            "items",
            100,
            pooling="none",
            fixed_length=False,
            length_distribution="lognormal",
        ),
        FeatureConfig(
            "clicked_category",
            "categories",
            100,
            pooling="none",
            fixed_length=False,
            lengths_from="clicked",
        ),
        FeatureConfig("recent", "items", 8, pooling="none", fixed_length=False),
    ),
    dense_features=0,
)


def test_lognormal_lengths_have_a_long_tail_within_the_capacity():
    lengths = lognormal_lengths(np.random.default_rng(0), 100, 200_000)
    assert lengths.dtype == np.int32 and lengths.min() == 1 and lengths.max() == 100
    # round(exp(N(log 20, 1))): median 20; P(<= 5) = P(z < log(5.5 / 20)) = 0.098;
    # P(at the capacity) = P(z > log(99.5 / 20)) = 0.054.
    assert np.median(lengths) == 20
    assert abs(np.mean(lengths <= 5) - 0.098) < 0.005
    assert abs(np.mean(lengths == 100) - 0.054) < 0.005
    assert 28 < lengths.mean() < 32
    assert lognormal_lengths(np.random.default_rng(0), 1, 10).tolist() == [1] * 10


def test_synthetic_lengths_follow_each_features_distribution_and_lender():
    batch = synthetic_features(INPUTS, 4000, seed=1)
    clicked = np.asarray(batch.lengths_of("clicked"))
    np.testing.assert_array_equal(batch.lengths_of("clicked_category"), clicked)
    assert np.median(clicked) == 20 and clicked.max() == 100  # the log-normal
    recent = np.asarray(batch.lengths_of("recent"))
    assert set(np.unique(recent)) == set(range(1, 9))  # uniform in [1, 8]
    category_ids = np.asarray(batch.ids_of("clicked_category"))
    for row, length in zip(category_ids[:50], clicked[:50], strict=True):
        assert np.all(row[length:] == 0) and row.max() < 7
    assert bool(inputs_valid(INPUTS, batch))


def test_features_that_share_lengths_must_agree():
    batch = synthetic_features(INPUTS, 6, seed=2)
    lengths = np.array(batch.lengths)
    lengths[3, 2] = (lengths[3, 1] + 1) % 101
    bad = dataclasses.replace(batch, lengths=lengths)
    assert not bool(inputs_valid(INPUTS, bad))
    assert describe_invalid_inputs(INPUTS, bad) == (
        f"feature 'clicked_category' has length {lengths[3, 2]} at sample 3, but it shares the "
        f"lengths of feature 'clicked', which has {lengths[3, 1]}; the two must be equal."
    )
    empty = np.array(batch.lengths)
    empty[:, 1:3] = 0  # empty sequences are valid
    assert bool(inputs_valid(INPUTS, dataclasses.replace(batch, lengths=empty)))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"fixed_length": False, "length_distribution": "zipf"},
            r"unknown length_distribution 'zipf'; expected one of \('uniform', 'lognormal'\)",
        ),
        ({"length_distribution": "lognormal"}, r"only applies to a feature that draws its own"),
        ({"lengths_from": "b"}, r"lengths_from='b' needs fixed_length=False"),
        ({"fixed_length": False, "lengths_from": "a"}, r"needs fixed_length=False and another"),
    ],
)
def test_length_fields_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        FeatureConfig("a", "t", 5, **fields)


@pytest.mark.parametrize(
    "lender",
    [
        FeatureConfig("first", "items", 9, pooling="none", fixed_length=False),  # capacity
        FeatureConfig("first", "items", 8),  # fixed length
    ],
)
def test_a_lender_must_be_an_earlier_ragged_feature_of_the_same_capacity(lender):
    borrower = FeatureConfig("second", "items", 8, fixed_length=False, lengths_from="first")
    with pytest.raises(ValueError, match=r"takes its lengths from 'first', which must be"):
        Inputs(
            name="x",
            tables=(TableConfig("items", 5, 2),),
            features=(lender, borrower),
            dense_features=0,
        )
    with pytest.raises(ValueError, match=r"earlier features: \[\]"):
        Inputs(
            name="x",
            tables=(TableConfig("items", 5, 2),),
            features=(borrower, lender),
            dense_features=0,
        )
