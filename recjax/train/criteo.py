"""Criteo click logs (Kaggle Display Advertising and Terabyte): a streaming reader and the mapping
of its fields onto any model's features.

The format: one example per line, 40 tab-separated fields, any of them but the label may be
empty:

    label  I1 ... I13  C1 ... C26
    0/1    integers    categoricals, 8 hexadecimal digits (hashed values)

Preprocessing (the reference DLRM's): an integer x becomes log(1 + max(x, 0)) (empty: 0); a
categorical value is read as a hexadecimal number (empty: 0) and mapped into its table's rows by
modulo (`categorical="modulo"`, the reference's `% max_ind_range`) or by a 64-bit mixing hash
(`categorical="hash"`).

Mapping onto a model (`CriteoMapping`). The Criteo shape is 13 dense and 26 sparse one-hot
features; `mapping="strict"` accepts only a model of exactly that shape and refuses any other,
naming the difference. `mapping="adapt"` (the default) maps any model by one rule:

- dense: model input f < 13 reads integer feature f; inputs past 13 are 0; a model with fewer
  than 13 dense inputs reads the first ones.
- sparse: model feature k reads categorical column k mod 26; a feature past the 26th (k >= 26)
  salts its hash with k // 26, so that it is not a copy of feature k - 26.
- several ids per sample (a DLRM bag of L ids, DCNv2's multi-hot features, a behaviour sequence):
  id 0 is the categorical's own row; with `multi_hot="hash"` (the default) id j > 0 is a hash of
  (value, column, j) into the table (as MLPerf's DLRMv2 derives its multi-hot Criteo from the
  one-hot data), with `multi_hot="repeat"` every id repeats id 0. A variable-length feature
  (`fixed_length=False`, ragged bags and sequences) holds 1 + hash(value, column) mod C ids,
  padded with id 0.
- weights of weighted features: 1.
- labels: every head of the model learns the one Criteo label.

Reading streams files larger than memory a window at a time (`criteo_batches`). Shuffling is
deterministic and resumable: each epoch visits the files in an order drawn from (seed, epoch),
and each window of `window_lines` consecutive lines is permuted by a generator seeded with
(seed, epoch, file, window), so that a `StreamPosition` (epoch, file, window, its byte offset,
examples already taken) restores the stream exactly.

Shapes: `N` examples, `B` batch, `C` ids per sample of a feature.
"""

import dataclasses
import functools
import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from recjax.inputs.features import Features, make_features
from recjax.models.family import ModelConfig

NUM_INTEGER = 13
NUM_CATEGORICAL = 26
NUM_FIELDS = 1 + NUM_INTEGER + NUM_CATEGORICAL

CATEGORICAL_TRANSFORMS = ("modulo", "hash")
MULTI_HOT = ("hash", "repeat")
MAPPINGS = ("adapt", "strict")

# Hexadecimal digit values by byte; 16 marks an invalid character, 17 the padding of a short field.
_HEX = np.full(256, 16, np.uint64)
for _digit, _value in zip(b"0123456789abcdef", range(16), strict=True):
    _HEX[_digit] = _value
for _digit, _value in zip(b"ABCDEF", range(10, 16), strict=True):
    _HEX[_digit] = _value
_HEX[0] = 17


@dataclasses.dataclass(frozen=True)
class CriteoRecords:
    """Parsed examples, before preprocessing.

    Attributes:
      labels: [N] float32 in {0, 1}.
      integers: [N, 13] int64 (empty fields are 0).
      categoricals: [N, 26] uint64, the hexadecimal values (empty fields are 0).
    """

    labels: np.ndarray
    integers: np.ndarray
    categoricals: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices) -> "CriteoRecords":
        return CriteoRecords(
            self.labels[indices], self.integers[indices], self.categoricals[indices]
        )

    @staticmethod
    def concatenate(parts: Sequence["CriteoRecords"]) -> "CriteoRecords":
        return CriteoRecords(
            np.concatenate([part.labels for part in parts]),
            np.concatenate([part.integers for part in parts]),
            np.concatenate([part.categoricals for part in parts]),
        )


class CriteoFormatError(ValueError):
    """A line that is not in the Criteo format; the message names the file and line."""


def _check_line(line: bytes, where: str) -> None:
    """Raises CriteoFormatError naming the first problem of one line."""
    fields = line.split(b"\t")
    if len(fields) != NUM_FIELDS:
        raise CriteoFormatError(
            f"{where}: expected {NUM_FIELDS} tab-separated fields (label, {NUM_INTEGER} integers, "
            f"{NUM_CATEGORICAL} categoricals); got {len(fields)}."
        )
    if fields[0] not in (b"0", b"1"):
        raise CriteoFormatError(f"{where}: the label must be 0 or 1; got {fields[0]!r}.")
    for index, field in enumerate(fields[1 : 1 + NUM_INTEGER]):
        try:
            int(field or b"0")
        except ValueError:
            raise CriteoFormatError(
                f"{where}: integer feature I{index + 1} must be a decimal integer or empty; got "
                f"{field!r}."
            ) from None
    for index, field in enumerate(fields[1 + NUM_INTEGER :]):
        try:
            ok = len(field) <= 16 and (not field or int(field, 16) >= 0)
        except ValueError:
            ok = False
        if not ok:
            raise CriteoFormatError(
                f"{where}: categorical feature C{index + 1} must be at most 16 hexadecimal "
                f"digits or empty; got {field!r}."
            )


def parse_lines(lines: Sequence[bytes], source: str = "<bytes>", first_line: int = 1):
    """CriteoRecords of Criteo-format lines (each without or with its newline; blank lines are
    skipped).

    Vectorized: one split and one fixed-width conversion for all fields. Raises
    CriteoFormatError naming `source`, the line number and the field at the first bad line.
    """
    original = [line.rstrip(b"\r\n") for line in lines]
    lines = [line for line in original if line]  # blank lines (a trailing one, say) are skipped
    count = len(lines)
    if count == 0:
        return CriteoRecords(
            np.zeros(0, np.float32),
            np.zeros((0, NUM_INTEGER), np.int64),
            np.zeros((0, NUM_CATEGORICAL), np.uint64),
        )
    fields = b"\t".join(lines).split(b"\t")
    try:
        if len(fields) != count * NUM_FIELDS:
            raise ValueError("field count")
        table = np.array(fields, dtype=np.bytes_).reshape(count, NUM_FIELDS)
        label_field = table[:, 0]
        if not np.all((label_field == b"0") | (label_field == b"1")):
            raise ValueError("label")
        integer_fields = table[:, 1 : 1 + NUM_INTEGER].copy()
        integer_fields[integer_fields == b""] = b"0"
        integers = integer_fields.astype(np.int64)
        categoricals = _parse_hex(table[:, 1 + NUM_INTEGER :])
    except (ValueError, OverflowError):
        for index, line in enumerate(original):
            if line:
                _check_line(line, f"{source}:{first_line + index}")
        raise  # not reached: some line is bad
    return CriteoRecords((label_field == b"1").astype(np.float32), integers, categoricals)


def _parse_hex(fields: np.ndarray) -> np.ndarray:
    """[N, 26] uint64 from fixed-width byte strings of up to 16 hexadecimal digits."""
    width = fields.dtype.itemsize
    digits = np.frombuffer(np.ascontiguousarray(fields).tobytes(), np.uint8)
    digits = _HEX[digits.reshape(*fields.shape, width)]  # [N, 26, W], 17 past a field's end
    if np.any(digits == 16):
        raise ValueError("hex digit")
    present = digits < 16
    lengths = present.sum(axis=-1, dtype=np.uint64)
    if np.any(lengths > 16):
        raise ValueError("hex length")
    # Digit p of a field of length L is worth 16^(L - 1 - p).
    shifts = np.uint64(4) * (lengths[..., None] - np.uint64(1) - np.arange(width, dtype=np.uint64))
    return np.where(present, digits << np.where(present, shifts, 0), 0).sum(
        axis=-1, dtype=np.uint64
    )


# --- hashing and the mapping onto a model ------------------------------------------------------


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijective 64-bit mixing of uint64 values (vectorized)."""
    x = np.asarray(values, np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def fast_range(hashes: np.ndarray, size: int) -> np.ndarray:
    """Uniform uint64 hashes to [0, size) by their top 32 bits (Lemire's multiply-shift)."""
    return ((hashes >> np.uint64(32)) * np.uint64(size)) >> np.uint64(32)


def salt_key(*salt: int) -> np.uint64:
    """A 64-bit key for a tuple of small integers (>= -1): hashing with a different key gives an
    independent hash."""
    key = np.uint64(0)
    for part in salt:
        key = mix64(np.asarray(key ^ np.uint64(part + 1)))[()]
    return key


class CriteoMapping:
    """Criteo examples as a model's `Features` (see the module docstring for the rule).

    Args:
      config: the model.
      mapping: "adapt" (any model, by the documented rule) or "strict" (only a model with 13
        dense inputs and 26 single-id sparse features).
      categorical: "modulo" or "hash": how a categorical value becomes a row.
      multi_hot: "hash" or "repeat": the other ids of a feature with several ids per sample.

    Raises ValueError naming a bad choice, or (strict) how the model differs from Criteo's shape.
    """

    def __init__(
        self,
        config: ModelConfig,
        mapping: str = "adapt",
        categorical: str = "modulo",
        multi_hot: str = "hash",
    ):
        for name, value, accepted in (
            ("mapping", mapping, MAPPINGS),
            ("categorical", categorical, CATEGORICAL_TRANSFORMS),
            ("multi_hot", multi_hot, MULTI_HOT),
        ):
            if value not in accepted:
                raise ValueError(f"Unknown Criteo {name} {value!r}; expected one of {accepted}.")
        multi = [feature.name for feature in config.features if feature.capacity > 1]
        if mapping == "strict" and (
            config.dense_features != NUM_INTEGER or len(config.features) != NUM_CATEGORICAL or multi
        ):
            raise ValueError(
                f"{config.name} takes {config.dense_features} dense inputs and "
                f"{len(config.features)} sparse features ({len(multi)} with several ids per "
                f"sample); the strict Criteo mapping needs {NUM_INTEGER} dense inputs and "
                f"{NUM_CATEGORICAL} sparse features of one id each. Use the adapting mapping, "
                "which maps any model by a documented rule."
            )
        self.config = config
        self.mapping = mapping
        self.categorical = categorical
        self.multi_hot = multi_hot

    @property
    def dense_columns(self) -> int:
        """How many of the 13 integer features the model reads."""
        return min(self.config.dense_features, NUM_INTEGER)

    @property
    def categorical_columns(self) -> tuple[int, ...]:
        """The categorical column (0-based) each sparse feature reads."""
        return tuple(index % NUM_CATEGORICAL for index in range(len(self.config.features)))

    def describe(self) -> str:
        """One line saying what the mapping does for this model."""
        config = self.config
        used = sorted(set(self.categorical_columns))
        unused = NUM_CATEGORICAL - len(used)
        dense = f"integers I1-I{self.dense_columns} -> dense inputs 0-{self.dense_columns - 1}"
        if config.dense_features == 0:
            dense = "no dense inputs (the integers unused)"
        elif config.dense_features > NUM_INTEGER:
            dense += f" of {config.dense_features} (the rest 0)"
        elif config.dense_features < NUM_INTEGER:
            dense += f" ({NUM_INTEGER - self.dense_columns} integers unused)"
        capacities = sorted({feature.capacity for feature in config.features})
        return (
            f"criteo -> {config.name} ({self.mapping}): {dense}; categoricals "
            f"C1-C{len(used)} -> {len(config.features)} sparse features"
            + (f" ({unused} categoricals unused)" if unused else "")
            + f" by {self.categorical}; ids per sample {capacities} (multi-hot: {self.multi_hot});"
            f" heads {list(config.heads)} all learn the click label"
        )

    @functools.cached_property
    def _keys(self) -> list[np.uint64]:
        """Per feature: the hash key of its (column, round)."""
        return [
            salt_key(*reversed(divmod(index, NUM_CATEGORICAL)))
            for index in range(len(self.config.features))
        ]

    def _ids(self, values: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """[N, C] ids and [N] lengths of feature `index` from its column's values [N]."""
        feature = self.config.features[index]
        capacity = feature.capacity
        rows = self.config.table(feature.table).num_rows
        first_hash = mix64(values ^ self._keys[index])  # [N]
        if self.categorical == "modulo" and index < NUM_CATEGORICAL:
            first = values % np.uint64(rows)
        else:
            first = fast_range(first_hash, rows)
        if self.multi_hot == "repeat" or capacity == 1:
            ids = np.repeat(first[:, None], capacity, axis=1)
        else:
            # Double hashing: h_j = h_1 + j * h_2, with h_2 odd.
            step = mix64(first_hash) | np.uint64(1)
            positions = np.arange(capacity, dtype=np.uint64)[None, :]
            with np.errstate(over="ignore"):
                ids = fast_range(first_hash[:, None] + positions * step[:, None], rows)
            ids[:, 0] = first
        if feature.fixed_length:
            lengths = np.full(values.shape[0], capacity, np.int64)
        else:
            lengths = 1 + fast_range(mix64(first_hash), capacity).astype(np.int64)
            ids = np.where(np.arange(capacity)[None, :] < lengths[:, None], ids, 0)
        return ids.astype(np.int32), lengths.astype(np.int32)

    def features(self, records: CriteoRecords) -> Features:
        """The model's host batch (NumPy) of `records`, labels included."""
        config = self.config
        count = len(records)
        dense = np.zeros((count, config.dense_features), np.float32)
        columns = self.dense_columns
        dense[:, :columns] = np.log1p(np.maximum(records.integers[:, :columns], 0)).astype(
            np.float32
        )
        sparse, weights = {}, {}
        for index, feature in enumerate(config.features):
            sparse[feature.name] = self._ids(
                records.categoricals[:, index % NUM_CATEGORICAL], index
            )
            if feature.weighted:
                weights[feature.name] = np.ones((count, feature.capacity), np.float32)
        labels = {head: records.labels for head in config.heads}
        return make_features(dense, sparse, config.features, weights=weights or None, labels=labels)


# --- streaming, shuffling, positions -----------------------------------------------------------

DEFAULT_WINDOW_LINES = 65_536


@dataclasses.dataclass(frozen=True)
class StreamPosition:
    """Where a Criteo stream stands: enough to restart it exactly (see the module docstring).

    Attributes:
      epoch: passes over the files completed.
      file: the index, in this epoch's file order, of the file being read.
      window: the window being read, counted from the file's start.
      offset: the byte offset of that window's first line.
      taken: examples of that window already given out.
    """

    epoch: int = 0
    file: int = 0
    window: int = 0
    offset: int = 0
    taken: int = 0

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, int]) -> "StreamPosition":
        return cls(**{field.name: int(values[field.name]) for field in dataclasses.fields(cls)})


def file_order(num_files: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order in which an epoch reads the files."""
    if not shuffle:
        return np.arange(num_files)
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_files)


def _windows(
    paths: Sequence[str], position: StreamPosition, window_lines: int, shuffle: bool, seed: int
) -> Iterator[tuple[CriteoRecords, StreamPosition]]:
    """Windows of one epoch from `position` on: (permuted records, the window's position)."""
    order = file_order(len(paths), seed, position.epoch, shuffle)
    for file_index in range(position.file, len(paths)):
        path = paths[order[file_index]]
        window, offset = 0, 0
        if file_index == position.file:
            window, offset = position.window, position.offset
        with open(path, "rb") as handle:
            handle.seek(offset)
            while True:
                lines = list(itertools.islice(handle, window_lines))
                if not lines:
                    break
                first_line = window * window_lines + 1
                records = parse_lines(lines, path, first_line)
                if shuffle:
                    generator = np.random.default_rng([seed, position.epoch, file_index, window])
                    records = records.take(generator.permutation(len(records)))
                yield records, StreamPosition(position.epoch, file_index, window, offset, 0)
                offset += sum(len(line) for line in lines)
                window += 1


def criteo_batches(
    paths: Sequence[str],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    repeat: bool = True,
    drop_remainder: bool = True,
    window_lines: int = DEFAULT_WINDOW_LINES,
    start: StreamPosition | None = None,
) -> Iterator[tuple[CriteoRecords, StreamPosition]]:
    """Batches of `batch_size` examples, each with the stream position just after it.

    `repeat=True` starts a new epoch after the last file (forever); else the stream ends, with a
    last short batch unless `drop_remainder`. `start` resumes at a position a batch gave.
    Raises ValueError for no files or a bad batch size, CriteoFormatError for a bad line.
    """
    if not paths:
        raise ValueError("No Criteo files given.")
    if batch_size <= 0 or window_lines <= 0:
        raise ValueError(
            f"batch_size and window_lines must be positive; got {batch_size}, {window_lines}."
        )
    position = start or StreamPosition()
    pending: list[CriteoRecords] = []
    pending_count = 0
    while True:
        examples_this_epoch = 0
        for records, window_position in _windows(paths, position, window_lines, shuffle, seed):
            taken = (
                position.taken if window_position == dataclasses.replace(position, taken=0) else 0
            )
            while taken < len(records):
                part = records.take(slice(taken, taken + batch_size - pending_count))
                taken += len(part)
                pending.append(part)
                pending_count += len(part)
                examples_this_epoch += len(part)
                if pending_count == batch_size:
                    yield (
                        CriteoRecords.concatenate(pending),
                        dataclasses.replace(window_position, taken=taken),
                    )
                    pending, pending_count = [], 0
        if examples_this_epoch == 0 and position == StreamPosition(epoch=position.epoch):
            raise ValueError(f"The Criteo files {list(paths)} hold no examples.")
        if not repeat:
            if pending_count and not drop_remainder:
                yield CriteoRecords.concatenate(pending), StreamPosition(epoch=position.epoch + 1)
            return
        position = StreamPosition(epoch=position.epoch + 1)
