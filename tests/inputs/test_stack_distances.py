"""Stack distances, profiles, regeneration and the files, against the reference DLRM's own code."""

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from recjax.inputs import stack_distances as sd
from tests.inputs import reference_dlrm_traces as reference


def lru_reference(trace, capacity):
    """A plain LRU cache of `capacity` rows: which accesses hit."""
    cache, hits = OrderedDict(), []
    for row in trace:
        hits.append(row in cache)
        if row in cache:
            cache.move_to_end(row)
        else:
            cache[row] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return np.asarray(hits)


@pytest.mark.parametrize(("length", "rows"), [(1, 1), (2, 1), (7, 3), (300, 40), (2000, 5000)])
def test_stack_distances_match_the_reference_profile(length, rows):
    trace = np.random.default_rng(length).integers(0, rows, length)
    _, distances, _ = reference.trace_profile(trace.tolist())
    np.testing.assert_array_equal(sd.stack_distances(trace), list(reversed(distances)))


@pytest.mark.parametrize("capacity", [1, 5, 60])
def test_lru_hits_match_a_simulated_lru_cache(capacity):
    trace = np.random.default_rng(capacity).zipf(1.3, 3000) % 200
    np.testing.assert_array_equal(sd.lru_hits(trace, capacity), lru_reference(trace, capacity))


def test_profile_of_the_reference_example_trace_is_its_example_profile(tmp_path):
    path = tmp_path / "trace.log"
    path.write_text(reference.EXAMPLE_TRACE + "\n")
    profile = sd.profile_trace(sd.read_trace(str(path)))
    unique, distances, cumulative = reference.profile_lists(reference.read_trace_from_file(path))
    assert profile.unique_ids.tolist() == unique == [1, 2, 3, 4, 5, 6]
    assert profile.distances.tolist() == distances == [0, 1, 3, 4, 5]
    np.testing.assert_allclose(profile.cumulative, cumulative, rtol=1e-12)
    (tmp_path / "dist.log").write_text(reference.EXAMPLE_PROFILE)  # rounded to 2 decimals there
    example = sd.read_profile(str(tmp_path / "dist.log"))
    np.testing.assert_allclose(profile.cumulative, example.cumulative, atol=0.005)
    assert profile.trace_length == example.trace_length == 11


def test_regeneration_is_the_reference_generator_draw_for_draw():
    rng = np.random.default_rng(0)
    for trial in range(25):
        trace = rng.integers(0, rng.integers(1, 40), rng.integers(1, 300))
        profile = sd.profile_trace(trace)
        count = int(rng.integers(1, 1500))
        got = sd.regenerate(profile, count, np.random.default_rng(trial))
        uniforms = iter(np.random.default_rng(trial).random(count).tolist())
        expected = reference.trace_generate_lru(
            profile.unique_ids.tolist(),
            profile.distances.tolist(),
            profile.cumulative.tolist(),
            count,
            uniforms,
        )
        assert got.tolist() == expected, trial


def _binned_counts(distances, edges):
    """Counts of distances in [0], then (edges[i], edges[i+1]]."""
    return np.histogram(distances, bins=np.concatenate([[-0.5, 0.5], edges[1:] + 0.5]))[0]


def _chi_square_p(observed_distances, profile):
    """p-value of the re-profiled distances under `profile`'s distribution, in ~10 bins."""
    probabilities = profile.probabilities
    # Bin the profile's distances into about 10 groups of similar probability (0 on its own).
    reuse = np.cumsum(probabilities[1:]) / probabilities[1:].sum()
    quantiles = np.searchsorted(reuse, np.linspace(0.1, 0.9, 9))
    edges = np.unique(
        np.concatenate([[0], profile.distances[1:][quantiles], [profile.max_distance]])
    )
    expected_share = np.asarray(
        [probabilities[0]]
        + [
            probabilities[(profile.distances > low) & (profile.distances <= high)].sum()
            for low, high in zip(edges[:-1], edges[1:], strict=True)
        ]
    )
    observed = _binned_counts(observed_distances, edges)
    expected = expected_share / expected_share.sum() * observed.sum()
    return stats.chisquare(observed, expected).pvalue


def drifting_trace(length, window, seed):
    """Ids that drift by one every 8 accesses, each drawn from the next `window` ids.

    Its stack distances stay below about 2 x window while new ids keep coming (one in 8), so a
    regenerated stream leaves the warm-up at once and runs out of new ids only past the profiled
    length: every distance it draws is then the distance measured on it.
    """
    rng = np.random.default_rng(seed)
    return np.arange(length) // 8 + rng.integers(0, window, length)


@pytest.fixture(scope="module")
def drifting_profile():
    return sd.profile_trace(drifting_trace(40_000, 16, seed=1))


def test_regenerated_stream_reproduces_the_profiles_stack_distances(drifting_profile):
    regenerated = sd.regenerate(drifting_profile, 30_000, np.random.default_rng(2))
    assert set(regenerated.tolist()) <= set(drifting_profile.unique_ids.tolist())
    assert _chi_square_p(sd.stack_distances(regenerated), drifting_profile) > 1e-3


def test_the_goodness_of_fit_test_rejects_another_profile(drifting_profile):
    wider = sd.profile_trace(drifting_trace(40_000, 24, seed=3))
    regenerated = sd.regenerate(wider, 30_000, np.random.default_rng(2))
    assert _chi_square_p(sd.stack_distances(regenerated), drifting_profile) < 1e-9


@pytest.fixture(scope="module")
def zipf_profile():
    return sd.profile_trace(np.random.default_rng(1).zipf(1.2, 40_000) % 400)


def test_profile_and_trace_files_round_trip_and_read_in_the_reference(tmp_path, zipf_profile):
    path = str(tmp_path / "dist_emb_0.log")
    sd.write_profile(path, zipf_profile)
    assert sd.read_profile(path) == zipf_profile  # floats written with repr: exact
    unique, distances, cumulative = reference.read_dist_from_file(path)
    assert unique == zipf_profile.unique_ids.tolist()
    assert distances == zipf_profile.distances.tolist()
    assert cumulative == zipf_profile.cumulative.tolist()
    theirs = str(tmp_path / "theirs.log")
    reference.write_dist_to_file(theirs, unique, distances, cumulative)
    assert Path(theirs).read_text() == Path(path).read_text()  # byte for byte the same

    trace = np.random.default_rng(4).integers(0, 10**9, 500)
    text, binary = str(tmp_path / "trace.log"), str(tmp_path / "trace.bin")
    sd.write_trace(text, trace)
    sd.write_trace(binary, trace, binary=True)
    np.testing.assert_array_equal(sd.read_trace(text), trace)
    np.testing.assert_array_equal(sd.read_trace(binary, binary=True), trace)
    assert reference.read_trace_from_file(text) == trace.tolist()
    reference.write_trace_to_file(theirs, trace.tolist())
    assert Path(theirs).read_text() == Path(text).read_text()
    np.testing.assert_array_equal(np.fromfile(binary, dtype=np.uint64), trace)


def test_trace_reader_takes_commas_and_white_space_over_lines(tmp_path):
    path = tmp_path / "trace.log"
    path.write_text("1, 2,3\n4 5\n\n6\n")
    assert sd.read_trace(str(path)).tolist() == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("1, 2, x\n0, 1\n0.5, 1.0\n", 1, "'x' is not an integer"),
        ("1, -2\n0, 1\n0.5, 1.0\n", 1, "-2 is not an id"),
        ("1, 2, 1\n0, 1\n0.5, 1.0\n", 1, "id 1 appears twice"),
        ("1, 2\n1, 2\n0.5, 1.0\n", 2, "starting at 0"),
        ("1, 2\n0, 2, 1\n0.5, 0.6, 1.0\n", 2, "ascending"),
        ("1, 2\n0, 3\n0.5, 1.0\n", 2, "exceeds the 2 distinct ids"),
        ("1, 2\n0, 1\n0.5\n", 3, "1 cumulative frequencies for 2 stack distances"),
        ("1, 2\n0, 1\n0.5, 0.9\n", 3, "end at 1"),
        ("1, 2\n0, 1\n0.6, 0.5\n", 3, "non-decreasing"),
        ("1, 2\n0, 1\n0.5, one\n", 3, "'one' is not a number"),
        ("1, 2\n0, 1\n", 3, "exactly 3 lines"),
        ("1, 2\n0, 1\n0.5, 1.0\n7\n", 4, "exactly 3 lines"),
    ],
)
def test_malformed_profiles_fail_naming_the_file_and_line(tmp_path, text, line, problem):
    path = tmp_path / "dist.log"
    path.write_text(text)
    with pytest.raises(sd.IdFileError, match=problem) as caught:
        sd.read_profile(str(path))
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{str(path)!r}, line {line}: ")


def test_missing_and_malformed_traces_fail_naming_the_file(tmp_path):
    with pytest.raises(sd.IdFileError, match="no such trace file") as caught:
        sd.read_trace(str(tmp_path / "absent.log"))
    assert str(tmp_path / "absent.log") in str(caught.value)
    with pytest.raises(sd.IdFileError, match="no such profile file"):
        sd.read_profile(str(tmp_path / "absent.log"))
    bad = tmp_path / "bad.log"
    bad.write_text("1, 2\n3, 4.5\n")
    with pytest.raises(sd.IdFileError, match=r"line 2: '4.5' is not an integer"):
        sd.read_trace(str(bad))
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01" * 12)
    with pytest.raises(sd.IdFileError, match="12 bytes is not a whole number"):
        sd.read_trace(str(odd), binary=True)
    empty = tmp_path / "empty.log"
    empty.write_text("\n")
    with pytest.raises(sd.IdFileError, match="holds no ids"):
        sd.read_trace(str(empty))
