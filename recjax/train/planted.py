"""Criteo-format files whose labels come from a known model, so the best reachable AUC is known.

The planted model is a logistic regression on what a recjax model sees after the Criteo mapping:

    logit = bias + sum_{c < signal_categoricals} w_c[value of C_c]
                 + sum_{i < signal_integers} a_i * (log(1 + max(I_i, 0)) - mean_i)
    label ~ Bernoulli(sigmoid(logit))

Each categorical column draws its values from a vocabulary of `vocabulary` random 32-bit values
(8 hexadecimal digits) with Zipf-like frequencies (p(rank r) ~ 1 / (r + 1)^1.05), and is empty
with probability `missing_rate` (empty is one more value, with its own weight); integers are
floor(exp(N(1.5, 1.5^2))) - 2, so that some are negative (Criteo has -1 and -2), and empty with
probability `missing_rate`. Weights are drawn once from the seed: w_c[v] ~ N(0, s^2) and
a_i ~ N(0, s_int^2), scaled so that the logit's standard deviation is `logit_std` (1.6: an AUC
near 0.8, Criteo's range), and the bias sets the click rate near `positive_rate`.

The generator's own AUC (and log loss) on the held-out file is that of the true probabilities:
no model can do better on average, and a model that learns the planted weights matches it. Give
`signal_categoricals` and `signal_integers` the columns a model reads (`CriteoMapping`), so that
everything the labels depend on is visible to it; columns past them carry values but no signal.

    data = write_planted_files("runs/planted", train_examples=262_144, eval_examples=32_768,
                               signal_categoricals=8, signal_integers=13, seed=0)
    data.train_paths, data.eval_path, data.auc
"""

import dataclasses
import json
import os

import numpy as np

from recjax.train import metrics
from recjax.train.criteo import NUM_CATEGORICAL, NUM_INTEGER

ZIPF_EXPONENT = 1.05
SUMMARY_FILE = "planted.json"


@dataclasses.dataclass(frozen=True)
class PlantedData:
    """Files written by `write_planted_files`, and how well the planted model itself does.

    Attributes:
      train_paths: the training files.
      eval_path: the held-out file.
      auc: the planted model's exact AUC on the held-out file (the best reachable, on average).
      logloss: its log loss there.
      positive_rate: the held-out click rate.
      settings: the generator's arguments.
    """

    train_paths: tuple[str, ...]
    eval_path: str
    auc: float
    logloss: float
    positive_rate: float
    settings: dict

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class PlantedModel:
    """The planted logistic model and a sampler of examples (see the module docstring)."""

    def __init__(
        self,
        *,
        signal_categoricals: int,
        signal_integers: int,
        vocabulary: int,
        seed: int,
        missing_rate: float = 0.03,
        logit_std: float = 1.6,
        positive_rate: float = 0.25,
    ):
        if (
            not 0 <= signal_categoricals <= NUM_CATEGORICAL
            or not 0 <= signal_integers <= NUM_INTEGER
        ):
            raise ValueError(
                f"signal_categoricals must be in [0, {NUM_CATEGORICAL}] and signal_integers in "
                f"[0, {NUM_INTEGER}]; got {signal_categoricals} and {signal_integers}."
            )
        if vocabulary < 1 or not 0 <= missing_rate < 1:
            raise ValueError(
                f"vocabulary must be >= 1 and missing_rate in [0, 1); got {vocabulary}, "
                f"{missing_rate}."
            )
        rng = np.random.default_rng([seed, 0x91A27])
        self.vocabulary = vocabulary
        self.missing_rate = missing_rate
        # Distinct nonzero 32-bit values per column (0 is what an empty field reads as).
        self.values = np.stack(
            [
                1 + rng.choice(2**32 - 1, vocabulary, replace=False).astype(np.uint64)
                for _ in range(NUM_CATEGORICAL)
            ]
        )  # [26, V]
        self.hex_values = np.asarray(
            [[b"%08x" % value for value in column] for column in self.values.tolist()], object
        )  # [26, V] the fields as written
        frequencies = 1.0 / np.arange(1, vocabulary + 1) ** ZIPF_EXPONENT
        self.value_probabilities = frequencies / frequencies.sum()
        # Weights: [26, V + 1], the last one for an empty field; zero past the signal columns.
        self.weights = rng.normal(size=(NUM_CATEGORICAL, vocabulary + 1))
        self.weights[signal_categoricals:] = 0.0
        self.integer_weights = rng.normal(size=NUM_INTEGER)
        self.integer_weights[signal_integers:] = 0.0
        # Scale: the categorical and integer parts share the logit's variance by their counts.
        sample = self._raw(rng, 20_000)
        _, _, integers, missing_integer = sample
        self.integer_means = self._integer_inputs(integers, missing_integer).mean(axis=0)
        parts = self._logit_parts(*sample)
        variance = float(np.var(parts[0] + parts[1]))
        self.scale = logit_std / np.sqrt(variance) if variance > 0 else 0.0
        centered = self.scale * (parts[0] + parts[1])
        low, high = -20.0, 20.0  # bisection: mean(sigmoid(bias + logit)) = positive_rate
        for _ in range(60):
            middle = (low + high) / 2
            if np.mean(1 / (1 + np.exp(-(middle + centered)))) < positive_rate:
                low = middle
            else:
                high = middle
        self.bias = (low + high) / 2

    def _raw(self, rng: np.random.Generator, count: int):
        ranks = rng.choice(
            self.vocabulary, size=(count, NUM_CATEGORICAL), p=self.value_probabilities
        )
        missing_categorical = rng.random((count, NUM_CATEGORICAL)) < self.missing_rate
        integers = (
            np.floor(np.exp(rng.normal(1.5, 1.5, size=(count, NUM_INTEGER)))).astype(np.int64) - 2
        )
        missing_integer = rng.random((count, NUM_INTEGER)) < self.missing_rate
        return ranks, missing_categorical, integers, missing_integer

    def _logit_parts(self, ranks, missing_categorical, integers, missing_integer):
        index = np.where(missing_categorical, self.vocabulary, ranks)
        categorical = self.weights[np.arange(NUM_CATEGORICAL)[None, :], index].sum(axis=1)
        seen = self._integer_inputs(integers, missing_integer)
        integer = ((seen - self.integer_means) * self.integer_weights).sum(axis=1)
        return categorical, integer

    @staticmethod
    def _integer_inputs(integers, missing_integer):
        """What the Criteo mapping makes of the integers: log(1 + max(x, 0)), empty -> 0."""
        return np.log1p(np.maximum(np.where(missing_integer, 0, integers), 0))

    def sample(self, rng: np.random.Generator, count: int) -> tuple[list[bytes], np.ndarray]:
        """`count` Criteo-format lines and their true click probabilities [count]."""
        raw = self._raw(rng, count)
        categorical, integer = self._logit_parts(*raw)
        probabilities = 1.0 / (1.0 + np.exp(-(self.bias + self.scale * (categorical + integer))))
        labels = (rng.random(count) < probabilities).astype(np.int64)
        ranks, missing_categorical, integers, missing_integer = raw
        columns = [labels.astype(np.bytes_)[:, None]]
        integer_text = integers.astype(np.bytes_).astype(object)
        integer_text[missing_integer] = b""
        columns.append(integer_text)
        hex_text = self.hex_values[np.arange(NUM_CATEGORICAL)[None, :], ranks]
        hex_text[missing_categorical] = b""
        columns.append(hex_text)
        table = np.concatenate([np.asarray(column, dtype=object) for column in columns], axis=1)
        lines = [b"\t".join(row) + b"\n" for row in table.tolist()]
        return lines, probabilities


def write_planted_files(
    directory: str,
    train_examples: int,
    eval_examples: int,
    *,
    signal_categoricals: int = NUM_CATEGORICAL,
    signal_integers: int = NUM_INTEGER,
    vocabulary: int = 100,
    train_files: int = 2,
    seed: int = 0,
) -> PlantedData:
    """Writes train_<i>.tsv (`train_files` of them), eval.tsv and planted.json into `directory`.

    The same arguments always write the same bytes.
    """
    if train_examples <= 0 or eval_examples <= 0 or train_files <= 0:
        raise ValueError(
            f"train_examples, eval_examples and train_files must be positive; got "
            f"{train_examples}, {eval_examples}, {train_files}."
        )
    settings = {
        "train_examples": train_examples,
        "eval_examples": eval_examples,
        "signal_categoricals": signal_categoricals,
        "signal_integers": signal_integers,
        "vocabulary": vocabulary,
        "train_files": train_files,
        "seed": seed,
    }
    model = PlantedModel(
        signal_categoricals=signal_categoricals,
        signal_integers=signal_integers,
        vocabulary=vocabulary,
        seed=seed,
    )
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng([seed, 0xDA7A])
    train_paths = []
    block = 65_536
    for file_index, count in enumerate(np.array_split(np.arange(train_examples), train_files)):
        path = os.path.join(directory, f"train_{file_index}.tsv")
        with open(path, "wb") as handle:
            for start in range(0, len(count), block):
                lines, _ = model.sample(rng, min(block, len(count) - start))
                handle.writelines(lines)
        train_paths.append(path)
    eval_path = os.path.join(directory, "eval.tsv")
    labels, probabilities = [], []
    with open(eval_path, "wb") as handle:
        for start in range(0, eval_examples, block):
            lines, p = model.sample(rng, min(block, eval_examples - start))
            handle.writelines(lines)
            labels.append(np.asarray([line[:1] == b"1" for line in lines], np.float64))
            probabilities.append(p)
    labels, probabilities = np.concatenate(labels), np.concatenate(probabilities)
    data = PlantedData(
        train_paths=tuple(train_paths),
        eval_path=eval_path,
        auc=metrics.auc(labels, probabilities),
        logloss=metrics.log_loss(labels, probabilities),
        positive_rate=float(labels.mean()),
        settings=settings,
    )
    with open(os.path.join(directory, SUMMARY_FILE), "w") as handle:
        json.dump(data.to_json(), handle, indent=2)
    return data
