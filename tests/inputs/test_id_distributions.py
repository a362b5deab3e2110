"""Id generators against their distributions, the spec parser, and ids in synthetic batches."""

import dataclasses

import numpy as np
import pytest
from scipy import stats

import configs
from recjax.inputs import id_distributions as ids
from recjax.inputs import stack_distances as sd
from recjax.inputs.features import TableConfig
from recjax.inputs.synthetic import synthetic_features, table_columns, valid_positions
from tests.layers.test_embedding_collection import Spec

TABLE = TableConfig("t", 50, 4)


def chi_square_p(rows: np.ndarray, probabilities: np.ndarray) -> float:
    """p-value of the row counts of `rows` under `probabilities` (one per row)."""
    observed = np.bincount(rows, minlength=probabilities.size)
    return stats.chisquare(observed, probabilities / probabilities.sum() * rows.size).pvalue


def zipf_row_probabilities(table: TableConfig, alpha: float) -> np.ndarray:
    """P(row): the Zipf pmf of each row's rank, the ranks placed by the table's permutation."""
    rank_pmf = np.arange(1, table.num_rows + 1, dtype=np.float64) ** -alpha
    rows_by_rank = ids.permute_rows(np.arange(table.num_rows), table.num_rows, table.name)
    probabilities = np.empty(table.num_rows)
    probabilities[rows_by_rank] = rank_pmf / rank_pmf.sum()
    return probabilities


def test_uniform_ids_fit_the_uniform_distribution_and_not_zipf():
    rows = ids.Uniform().sample(TABLE, 50_000, np.random.default_rng(0))
    assert chi_square_p(rows, np.ones(TABLE.num_rows)) > 1e-3
    assert chi_square_p(rows, zipf_row_probabilities(TABLE, 0.5)) < 1e-9


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.05, 1.2, 2.5])
def test_zipf_ids_fit_their_distribution(alpha):
    rows = ids.Zipf(alpha).sample(TABLE, 50_000, np.random.default_rng(1))
    assert rows.min() >= 0 and rows.max() < TABLE.num_rows
    assert chi_square_p(rows, zipf_row_probabilities(TABLE, alpha)) > 1e-3


def test_the_goodness_of_fit_test_rejects_wrong_zipf_ids():
    rows = ids.Zipf(1.2).sample(TABLE, 50_000, np.random.default_rng(1))
    assert chi_square_p(rows, zipf_row_probabilities(TABLE, 1.05)) < 1e-9  # another exponent
    assert chi_square_p(rows, np.ones(TABLE.num_rows)) < 1e-9
    # A plausible wrong sampler: NumPy's unbounded Zipf folded onto the table.
    rank_pmf = zipf_row_probabilities(dataclasses.replace(TABLE, name="identity"), 1.2)
    folded = (np.random.default_rng(2).zipf(1.2, 50_000) - 1) % TABLE.num_rows
    ranks_as_rows = ids.permute_rows(folded, TABLE.num_rows, "identity")
    assert chi_square_p(ranks_as_rows, rank_pmf) < 1e-9


def test_zipf_is_exact_on_a_large_table():
    """4 M rows (rmc1's): the hottest ranks and the top-1% share within 5 standard errors."""
    num_rows, alpha, draws = 4_000_000, 1.05, 400_000
    ranks = ids.Zipf(alpha).ranks(num_rows, draws, np.random.default_rng(3))
    assert ranks.min() >= 0 and ranks.max() < num_rows
    weights = np.arange(1, num_rows + 1, dtype=np.float64) ** -alpha
    pmf = weights / weights.sum()
    for probability, observed in [
        (pmf[0], np.mean(ranks == 0)),
        (pmf[1], np.mean(ranks == 1)),
        (pmf[:40_000].sum(), np.mean(ranks < 40_000)),
        (pmf[1_000_000:].sum(), np.mean(ranks >= 1_000_000)),
    ]:
        error = np.sqrt(probability * (1 - probability) / draws)
        assert abs(observed - probability) < 5 * error


@pytest.mark.parametrize("num_rows", [1, 2, 3, 5, 16, 17, 1000, 4097])
def test_row_permutation_is_a_bijection_keyed_by_the_table(num_rows):
    rows = ids.permute_rows(np.arange(num_rows), num_rows, "a")
    assert sorted(rows.tolist()) == list(range(num_rows))
    np.testing.assert_array_equal(rows, ids.permute_rows(np.arange(num_rows), num_rows, "a"))
    if num_rows >= 16:
        assert not np.array_equal(rows, ids.permute_rows(np.arange(num_rows), num_rows, "b"))


def test_hot_rows_are_scattered_and_fixed_per_table():
    table = TableConfig("rmc1_table_0", 4_000_000, 32)
    hottest = ids.Zipf(1.2).rows_of_ranks(table, np.arange(1000))
    # In 1,000 slices of the table, as 1,000 random rows would be (632 slices expected).
    assert 550 < np.unique(hottest // 4000).size < 710
    draws = [ids.Zipf(1.2).sample(table, 2000, np.random.default_rng(seed)) for seed in (0, 1)]
    for rows in draws:  # the hottest row is the same whatever the seed
        assert np.mean(rows == hottest[0]) > 0.05


# ---------------------------------------------------------------------------------------------
# The spec parser.


@pytest.mark.parametrize(
    ("text", "default", "overrides"),
    [
        ("uniform", ids.Uniform(), ()),
        ("zipf:1.05", ids.Zipf(1.05), ()),
        (" zipf:2 ", ids.Zipf(2.0), ()),
        ("trace:/data/dist_emb_{index}.log", ids.TraceFiles("/data/dist_emb_{index}.log"), ()),
        ("t3=uniform", ids.Uniform(), (("t3", ids.Uniform()),)),
        (
            "zipf:1.2,t3=uniform, t4=trace:a=b.log",
            ids.Zipf(1.2),
            (("t3", ids.Uniform()), ("t4", ids.TraceFiles("a=b.log"))),
        ),
        ("trace:x=1.log", ids.TraceFiles("x=1.log"), ()),
    ],
)
def test_parser_reads_defaults_and_per_table_overrides(text, default, overrides):
    spec = ids.parse_id_spec(text)
    assert (spec.default, spec.overrides) == (default, overrides)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Empty id spec"),
        ("zipf", r"Unknown id distribution 'zipf'; expected uniform, zipf:ALPHA"),
        ("gauss:1", "Unknown id distribution 'gauss:1'"),
        ("uniform:3", "Unknown id distribution 'uniform:3'"),
        ("zipf:abc", "the Zipf exponent must be a positive number; got 'abc'"),
        ("zipf:-1", "positive number; got '-1'"),
        ("zipf:0", "positive number; got '0'"),
        ("zipf:nan", "positive number; got 'nan'"),
        ("trace:", "trace: needs the path of a profile"),
        ("uniform,zipf:1.1", "has two defaults"),
        ("t1=uniform,t1=zipf:2", "names table 't1' twice"),
        ("=uniform", "names no table"),
        ("uniform,,t1=zipf:2", "empty item"),
        ("t1=zipf:x", "got 'x'"),
    ],
)
def test_parser_errors_name_the_bad_value_and_what_is_accepted(text, message):
    with pytest.raises(ValueError, match=message):
        ids.parse_id_spec(text)


def test_resolve_names_unknown_tables_and_lists_the_models():
    config = configs.get("rmc2-tiny")
    with pytest.raises(ValueError, match=r"names table 'rmc1_table_3'.*rmc2_table_0"):
        ids.resolve_id_spec("zipf:1.1,rmc1_table_3=uniform", config)
    resolved = ids.resolve_id_spec("zipf:1.1,rmc2_table_3=uniform", config)
    assert resolved["rmc2_table_3"] == ids.Uniform() and resolved["rmc2_table_0"] == ids.Zipf(1.1)
    assert len(resolved) == len(config.tables)


def write_profile(path, unique_ids):
    profile = sd.profile_trace(np.asarray(unique_ids * 3))
    sd.write_profile(str(path), profile)
    return profile


def test_trace_paths_name_the_table_or_its_index_and_are_range_checked(tmp_path):
    config = configs.get("rmc1-tiny")  # 8 tables of 1,000 rows
    for index, table in enumerate(config.tables):
        write_profile(tmp_path / f"dist_emb_{index}.log", [index, 10 + index])
        write_profile(tmp_path / f"{table.name}.log", [500 + index])
    by_index = ids.resolve_id_spec(f"trace:{tmp_path}/dist_emb_{{index}}.log", config)
    assert by_index["rmc1_table_5"].profile.unique_ids.tolist() == [5, 15]
    by_name = ids.resolve_id_spec(f"trace:{tmp_path}/{{table}}.log", config)
    assert by_name["rmc1_table_2"].profile.unique_ids.tolist() == [502]

    write_profile(tmp_path / "dist_emb_6.log", [3, 999, 1000, 4000])
    with pytest.raises(sd.IdFileError) as caught:
        ids.resolve_id_spec(f"trace:{tmp_path}/dist_emb_{{index}}.log", config)
    message = str(caught.value)
    assert message.startswith(f"table 'rmc1_table_6': '{tmp_path}/dist_emb_6.log', line 1: ")
    assert "id 1000 (value 3 of the line) is beyond the table's 1000 rows" in message
    assert "(2 of the 4 ids do not)" in message

    with pytest.raises(sd.IdFileError, match=r"table 'rmc1_table_0': '.*absent.log': no such"):
        ids.resolve_id_spec(f"trace:{tmp_path}/absent.log", config)
    (tmp_path / "bad.log").write_text("1, 2\n0, 1\n0.5, 1.5\n")
    with pytest.raises(sd.IdFileError, match=r"table 'rmc1_table_0': '.*bad.log', line 3: "):
        ids.resolve_id_spec(f"zipf:1.1,rmc1_table_0=trace:{tmp_path}/bad.log", config)


# ---------------------------------------------------------------------------------------------
# Ids in synthetic batches.


def test_uniform_batches_keep_todays_values():
    """The draws of synthetic_features before id distributions existed, for a DLRM preset."""
    config = configs.get("rmc1-tiny")
    rng = np.random.default_rng(7)
    dense = rng.random((4, config.dense_features), dtype=np.float32)
    rows = np.repeat([t.num_rows for t in config.tables], [f.capacity for f in config.features])
    expected = rng.integers(0, rows[None, :], size=(4, rows.size)).astype(np.int32)
    for spec in (None, {}, ids.resolve_id_spec("uniform", config)):
        batch = synthetic_features(config, 4, seed=7, ids=spec)
        np.testing.assert_array_equal(batch.ids, expected)
        np.testing.assert_array_equal(batch.dense, dense)


def test_a_tables_distribution_changes_only_its_valid_ids():
    uniform = synthetic_features(Spec, 64, seed=3, labels=True)
    zipf = synthetic_features(Spec, 64, seed=3, labels=True, ids={"items": ids.Zipf(1.5)})
    for name in ("dense", "lengths", "weights"):
        np.testing.assert_array_equal(getattr(zipf, name), getattr(uniform, name))
    np.testing.assert_array_equal(zipf.labels["click"], uniform.labels["click"])
    items = table_columns(Spec, "items")
    others = np.setdiff1d(np.arange(uniform.ids.shape[1]), items)
    np.testing.assert_array_equal(zipf.ids[:, others], uniform.ids[:, others])
    valid = valid_positions(Spec, zipf.lengths, items)
    assert np.all(zipf.ids[:, items][~valid] == 0)  # padding stays 0
    drawn = zipf.ids[:, items][valid]
    assert drawn.max() < 40 and np.mean(drawn == np.bincount(drawn).argmax()) > 0.2
    again = synthetic_features(Spec, 64, seed=3, labels=True, ids={"items": ids.Zipf(1.5)})
    np.testing.assert_array_equal(again.ids, zipf.ids)


def test_a_trace_table_reads_a_window_of_the_regenerated_trace_in_batch_order():
    profile = sd.profile_trace(np.random.default_rng(0).zipf(1.3, 3000) % 40)
    distribution = ids.StackDistanceTrace("p.log", profile)
    batch = synthetic_features(Spec, 16, seed=1, ids={"items": distribution})
    items = table_columns(Spec, "items")
    stream = batch.ids[:, items][valid_positions(Spec, batch.lengths, items)]
    trace = distribution.trace
    assert trace.size == profile.trace_length == 3000
    starts = [
        start
        for start in range(trace.size)
        if np.array_equal(trace[(start + np.arange(stream.size)) % trace.size], stream)
    ]
    assert starts  # one stretch of the regenerated trace, sample by sample, feature by feature


def test_unknown_tables_in_an_id_mapping_are_refused():
    with pytest.raises(ValueError, match=r"name tables \['nope'\].*'items'"):
        synthetic_features(Spec, 2, seed=0, ids={"nope": ids.Zipf(1.1)})
