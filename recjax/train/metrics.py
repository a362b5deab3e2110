"""Evaluation metrics of a click head, exact and in NumPy: AUC, log loss, accuracy.

AUC is the rank statistic (Mann-Whitney U): the probability that a random positive scores above a
random negative, ties counting one half, computed exactly from average ranks over all samples
(no bucketing), so it is the same number whatever the batch size or order of evaluation.
"""

import numpy as np

# Predictions are clipped to [EPSILON, 1 - EPSILON] in the log loss (as scikit-learn does for
# float32), so a confident wrong prediction costs about 16 nats, not infinity.
EPSILON = 1e-7


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `scores`, tied scores sharing the mean of their ranks."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # Each run of equal scores [start, end) gets the rank (start + 1 + end) / 2.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    run_ranks = (starts + 1 + ends) / 2.0
    ranks = np.empty(scores.size, np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact area under the ROC curve; NaN when the labels hold only one class."""
    labels = np.asarray(labels).reshape(-1) > 0.5
    scores = np.asarray(scores, np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape.")
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = _average_ranks(scores)[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy in nats."""
    labels = np.asarray(labels, np.float64).reshape(-1)
    p = np.clip(np.asarray(probabilities, np.float64).reshape(-1), EPSILON, 1 - EPSILON)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def accuracy(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> float:
    """The fraction of samples whose prediction (probability > threshold) equals the label."""
    labels = np.asarray(labels).reshape(-1) > 0.5
    return float(np.mean((np.asarray(probabilities).reshape(-1) > threshold) == labels))


def head_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """{"auc", "logloss", "accuracy", "positive_rate", "examples"} of one head."""
    labels = np.asarray(labels).reshape(-1)
    return {
        "auc": auc(labels, probabilities),
        "logloss": log_loss(labels, probabilities),
        "accuracy": accuracy(labels, probabilities),
        "positive_rate": float(np.mean(labels > 0.5)) if labels.size else float("nan"),
        "examples": int(labels.size),
    }
