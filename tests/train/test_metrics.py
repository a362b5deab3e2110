"""Exact AUC, log loss and accuracy against brute-force references."""

import itertools
import math

import numpy as np
import pytest

from recjax.train import metrics


def pairwise_auc(labels, scores):
    """Every (positive, negative) pair: 1 if the positive scores higher, 1/2 for a tie."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(
        1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives)
    )
    return wins / (len(positives) * len(negatives))


@pytest.mark.parametrize("seed", range(4))
def test_auc_equals_the_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = rng.integers(0, 12, 300) / 11.0  # many ties
    assert metrics.auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)


def test_auc_by_hand_and_degenerate_cases():
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert metrics.auc([1, 0], [0.5, 0.5]) == 0.5
    assert metrics.auc([0, 1], [0.9, 0.1]) == 0.0
    assert math.isnan(metrics.auc([1, 1], [0.2, 0.3]))
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.auc([1, 0], [0.1])


def test_log_loss_and_accuracy_by_hand():
    labels = np.asarray([1, 0, 1])
    p = np.asarray([0.8, 0.4, 0.3])
    expected = -(math.log(0.8) + math.log(0.6) + math.log(0.3)) / 3
    assert metrics.log_loss(labels, p) == pytest.approx(expected)
    assert metrics.log_loss([1], [0.0]) == pytest.approx(-math.log(metrics.EPSILON))
    assert metrics.accuracy(labels, p) == pytest.approx(2 / 3)
    summary = metrics.head_metrics(labels, p)
    assert summary["examples"] == 3 and summary["positive_rate"] == pytest.approx(2 / 3)
