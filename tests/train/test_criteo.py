"""The Criteo reader and mapping against plain-Python references, and the planted generator."""

import dataclasses
import itertools

import numpy as np
import pytest

import configs
from recjax.inputs.checks import describe_invalid_inputs
from recjax.models.dlrm import DLRMConfig, one_bag_per_table
from recjax.train import criteo, metrics
from recjax.train.criteo import (
    CriteoFormatError,
    CriteoMapping,
    StreamPosition,
    criteo_batches,
    parse_lines,
)
from recjax.train.planted import PlantedModel, write_planted_files
from tests.train.mixed_family import mixed_config

LINES = [
    b"1\t5\t-3\t\t0\t12\t1\t2\t3\t4\t5\t6\t7\t8\t"
    + b"\t".join([b"68fd1e64", b"", b"ABCDEF01", b"7"] + [b"%08x" % i for i in range(22)])
    + b"\n",
    b"0\t\t\t\t\t\t\t\t\t\t\t\t\t\t" + b"\t" * 25 + b"\r\n",
]


def reference_parse(line: bytes):
    fields = line.rstrip(b"\r\n").split(b"\t")
    return (
        int(fields[0]),
        [int(field or b"0") for field in fields[1:14]],
        [int(field or b"0", 16) for field in fields[14:]],
    )


def test_parse_matches_python_int_parsing_with_empty_negative_short_and_uppercase_fields():
    records = parse_lines(LINES)
    for index, line in enumerate(LINES):
        label, integers, categoricals = reference_parse(line)
        assert records.labels[index] == label
        assert records.integers[index].tolist() == integers
        assert records.categoricals[index].tolist() == categoricals
    assert records.categoricals.dtype == np.uint64 and records.integers.dtype == np.int64


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"1\t2\n", r"bad.tsv:8: expected 40 tab-separated fields .* got 2"),
        (LINES[0].replace(b"1\t5", b"2\t5", 1), r"bad.tsv:8: the label must be 0 or 1; got b'2'"),
        (LINES[0].replace(b"\t-3\t", b"\tx3\t"), r"bad.tsv:8: integer feature I2 .* b'x3'"),
        (LINES[0].replace(b"68fd1e64", b"68fd1g64"), r"bad.tsv:8: categorical feature C1 .*"),
    ],
)
def test_a_bad_line_is_named_by_file_line_and_field(line, message):
    with pytest.raises(CriteoFormatError, match=message):
        parse_lines([LINES[0], line], "bad.tsv", first_line=7)


def criteo_shaped_config(**changes) -> DLRMConfig:
    tables, features = one_bag_per_table("c", 26, 50, 4, pooling_factor=1)
    return DLRMConfig(
        name="criteo-shaped",
        tables=tables,
        features=features,
        dense_features=13,
        bottom_mlp=(8, 4),
        top_mlp=(8, 1),
        **changes,
    )


def test_strict_mapping_takes_the_criteo_shape_and_refuses_others_by_name():
    config = criteo_shaped_config()
    batch = CriteoMapping(config, mapping="strict").features(parse_lines(LINES))
    values = parse_lines(LINES).categoricals
    for index, feature in enumerate(config.features):
        np.testing.assert_array_equal(batch.ids_of(feature.name)[:, 0], values[:, index] % 50)
    with pytest.raises(ValueError, match=r"rmc1-tiny takes 128 dense inputs and 8 sparse .*"):
        CriteoMapping(configs.get("rmc1-tiny"), mapping="strict")
    with pytest.raises(ValueError, match=r"Unknown Criteo multi_hot 'x'; expected one of"):
        CriteoMapping(config, multi_hot="x")


def test_adapting_mapping_follows_the_documented_rule():
    config = configs.get("rmc2-tiny")  # 256 dense inputs, 32 bags of 120 ids, 1,000 rows each
    records = parse_lines(LINES)
    mapping = CriteoMapping(config)
    batch = mapping.features(records)
    expected_dense = np.zeros((2, 256), np.float32)
    expected_dense[:, :13] = np.log1p(np.maximum(records.integers, 0))
    np.testing.assert_allclose(batch.dense, expected_dense, rtol=1e-6)
    assert batch.dense[0, 1] == 0.0  # I2 = -3 -> 0
    assert describe_invalid_inputs(config, batch) == "all inputs are valid"
    first = batch.ids_of("rmc2_table_0")
    np.testing.assert_array_equal(first[:, 0], records.categoricals[:, 0] % 1000)
    assert len(set(first[0].tolist())) > 100  # 120 hashed ids, few collisions in 1,000 rows
    # Feature 26 reads column 0 again, with its own hash.
    again = batch.ids_of("rmc2_table_26")
    assert not np.array_equal(again, first)
    # The same value always maps to the same ids: rows 0 and a copy of it agree.
    copy = mapping.features(records.take([0, 0]))
    np.testing.assert_array_equal(copy.ids[0], copy.ids[1])
    np.testing.assert_array_equal(copy.ids[0], batch.ids[0])
    assert set(batch.labels) == {"click"} and batch.labels["click"].tolist() == [1.0, 0.0]
    assert "32 sparse features" in mapping.describe() and "256" in mapping.describe()


def test_repeat_multi_hot_ragged_sequence_and_weighted_features():
    config = mixed_config()
    records = parse_lines(LINES * 20)
    batch = CriteoMapping(config, multi_hot="repeat").features(records)
    assert describe_invalid_inputs(config, batch) == "all inputs are valid"
    assert set(batch.labels) == {"click", "like"}
    for feature in config.features:
        ids = batch.ids_of(feature.name)
        lengths = batch.lengths_of(feature.name)
        assert np.all((lengths >= 1) & (lengths <= feature.capacity))
        for sample in range(len(records)):
            held = ids[sample, : lengths[sample]]
            assert np.all(held == held[0])  # repeat: every id is the first
            assert np.all(ids[sample, lengths[sample] :] == 0)
    weighted = [i for i, f in enumerate(config.features) if f.weighted]
    assert weighted and np.all(batch.weights == 1.0)


def write_lines(path, count, start=0):
    """`count` valid lines whose I1 holds their global index (to follow them through shuffles)."""
    rest = LINES[0].split(b"\t", 2)[2]
    path.write_bytes(b"".join(b"%d\t%d\t" % (i % 2, i) + rest for i in range(start, start + count)))
    return str(path)


@pytest.fixture
def files(tmp_path):
    return [write_lines(tmp_path / "a.tsv", 23), write_lines(tmp_path / "b.tsv", 18, start=23)]


def indices(records):
    return records.integers[:, 0].tolist()


def test_unshuffled_stream_reads_in_order_and_keeps_the_short_last_batch(files):
    batches = list(criteo_batches(files, 5, shuffle=False, repeat=False, drop_remainder=False))
    assert sum((indices(records) for records, _ in batches), []) == list(range(41))
    assert [len(records) for records, _ in batches][-1] == 1


def test_shuffled_epochs_are_permutations_differ_and_repeat_deterministically(files):
    def first(count, seed):
        stream = criteo_batches(files, 41, shuffle=True, seed=seed, window_lines=8)
        return [indices(records) for records, _ in itertools.islice(stream, count)]

    epochs = first(3, seed=1)
    for epoch in epochs:
        assert sorted(epoch) == list(range(41))
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != list(range(41))
    assert first(3, seed=1) == epochs
    assert first(1, seed=2) != epochs[:1]


def test_resuming_at_any_batch_position_continues_exactly(files):
    def stream(start=None):
        return criteo_batches(files, 7, shuffle=True, seed=3, window_lines=6, start=start)

    reference = list(itertools.islice(stream(), 20))  # several epochs, batches across windows
    for stop in (1, 3, 6, 11):
        position = StreamPosition.from_json(reference[stop - 1][1].to_json())
        resumed = list(itertools.islice(stream(position), 20 - stop))
        for (expected, _), (got, _) in zip(reference[stop:], resumed, strict=True):
            assert indices(got) == indices(expected)


def test_no_files_or_empty_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="No Criteo files"):
        next(criteo_batches([], 4, shuffle=False))
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="hold no examples"):
        next(criteo_batches([str(empty)], 4, shuffle=False))


def test_planted_files_are_reproducible_readable_and_their_auc_is_the_true_models(tmp_path):
    first = write_planted_files(
        str(tmp_path / "one"), 3000, 4000, signal_categoricals=5, vocabulary=20, seed=4
    )
    second = write_planted_files(
        str(tmp_path / "two"), 3000, 4000, signal_categoricals=5, vocabulary=20, seed=4
    )
    paths = zip(
        (*first.train_paths, first.eval_path), (*second.train_paths, second.eval_path), strict=True
    )
    for a, b in paths:
        with open(a, "rb") as one, open(b, "rb") as two:
            assert one.read() == two.read()
    assert first.auc == second.auc and 0.7 < first.auc < 0.95
    with open(first.eval_path, "rb") as handle:
        records = parse_lines(handle.readlines())
    assert len(records) == 4000 and abs(records.labels.mean() - first.positive_rate) < 1e-9
    assert abs(first.positive_rate - 0.25) < 0.05
    # Columns past the signal columns carry no weight.
    model = PlantedModel(signal_categoricals=5, signal_integers=0, vocabulary=20, seed=4)
    assert np.all(model.weights[5:] == 0) and np.any(model.weights[:5] != 0)
    assert np.all(model.integer_weights == 0)
    # The planted probabilities follow the logistic model of the written values.
    lines, probabilities = model.sample(np.random.default_rng(0), 200)
    parsed = parse_lines(lines)
    assert abs(metrics.auc(parsed.labels, probabilities) - 0.5) > 0.05
    assert dataclasses.asdict(StreamPosition()) == StreamPosition().to_json()
    assert criteo.NUM_FIELDS == 40


def test_blank_lines_are_skipped_and_line_numbers_still_count_them():
    records = parse_lines([LINES[0], b"\n", LINES[1], b""])
    assert len(records) == 2 and records.labels.tolist() == [1.0, 0.0]
    with pytest.raises(CriteoFormatError, match=r"f.tsv:3: expected 40"):
        parse_lines([LINES[0], b"\n", b"1\t2\n"], "f.tsv")


def test_a_model_without_dense_inputs_maps_too():
    config = dataclasses.replace(mixed_config(), dense_features=0)
    mapping = CriteoMapping(config)
    assert "no dense inputs" in mapping.describe() and mapping.dense_columns == 0
    batch = mapping.features(parse_lines(LINES))
    assert batch.dense.shape == (2, 0)
    assert describe_invalid_inputs(config, batch) == "all inputs are valid"
