"""LRU stack distances: profiling an id trace, regenerating ids from a profile, and the files.

The method is Hassan et al.'s ("Synthetic Trace-Driven Simulation of Cache Memory", AINAM 2007)
as the reference DLRM implements it (facebookresearch/dlrm, dlrm_data_pytorch.py: `trace_profile`,
`trace_generate_lru`, `read_dist_from_file`, `write_dist_to_file`), with the same conventions and
the same file formats, so that a profile written by either tool is read by both:

  stack distance  of an access to id x: 0 if x was never accessed before (a new reference), else
                  1 + the number of distinct other ids accessed since x's previous access (an id
                  accessed twice in a row has distance 1). A fully associative LRU cache of K
                  rows hits exactly the accesses of distance 1..K (Mattson et al., 1970).
  profile         (`StackDistanceProfile`) the trace's distinct ids in order of first access, the
                  distinct stack distances in ascending order, and their cumulative frequencies.
  regeneration    draws a stack distance from the profile per id and replays it on an LRU stack
                  that starts as the profile's ids, unseen, in first-access order: distance 0
                  takes the next unseen id (once all are seen: the least recently used one),
                  distance d > 0 takes the d-th most recent id; either moves to the top. While
                  fewer than the largest distance's worth of ids have been introduced, the draw is
                  restricted to distances <= that number (the reference's warm-up rule).

File formats (text, as the reference writes them):

  trace file    one line of ids separated by ", " (the reference's --trace-file; it reads the
                first line only). recjax also reads ids separated by commas and/or white space
                over several lines, and the reference's binary form (raw little-endian uint64).
  profile file  (the reference's `dist_emb_j.log`, its --data-trace-file) three lines, each a
                ", "-separated list: line 1 the distinct ids in first-access order, line 2 the
                distinct stack distances (ascending integers, starting at 0), line 3 their
                cumulative frequencies (floats, non-decreasing, ending at 1).

Stack distances of a whole trace are computed in O(n log^2 n) with NumPy (no per-id Python
loop): distance(t) = t - p - #{j < t : prev(j) >= p}, with p = prev(t) the previous access to
the same id, counted over a binary decomposition of [0, t) into aligned blocks whose values are
sorted once per level. Regeneration is inherently sequential: a Python loop over the ids (about
a microsecond per id), with the stack-distance draws vectorized.
"""

import bisect
import dataclasses
import os

import numpy as np

# The reference writes ids and distances with str(list(...))[1:-1]: ", " between values.
SEPARATOR = ", "
# Ids are stored as int64 here (the reference writes uint64); larger ids are refused.
MAX_ID = np.iinfo(np.int64).max
# Cumulative frequencies must end at 1 within this tolerance (the reference sums floats).
CUMULATIVE_TOLERANCE = 1e-6


class IdFileError(ValueError):
    """A trace or profile file that is missing, malformed, or names ids a table does not hold.

    The message names the file, the line (when the problem is on one) and the table (when the
    file was read for one).
    """

    def __init__(self, path: str, problem: str, line: int | None = None, table: str | None = None):
        self.path, self.problem, self.line, self.table = os.fspath(path), problem, line, table
        where = f"{self.path!r}" + (f", line {line}" if line is not None else "")
        prefix = f"table {table!r}: " if table is not None else ""
        super().__init__(f"{prefix}{where}: {problem}")

    def for_table(self, table: str) -> "IdFileError":
        """The same error, naming the table the file was read for."""
        return IdFileError(self.path, self.problem, self.line, table)


@dataclasses.dataclass(frozen=True, eq=False)
class StackDistanceProfile:
    """The LRU stack-distance profile of an id trace (the reference DLRM's dist_emb file).

    Attributes:
      unique_ids: [U] int64, the trace's distinct ids in order of first access.
      distances: [M] int64, the distinct stack distances, ascending, the first 0.
      cumulative: [M] float64, P(distance <= distances[m]), non-decreasing, the last 1.
    """

    unique_ids: np.ndarray
    distances: np.ndarray
    cumulative: np.ndarray

    @property
    def probabilities(self) -> np.ndarray:
        """[M] P(distance == distances[m])."""
        return np.diff(self.cumulative, prepend=0.0)

    @property
    def max_distance(self) -> int:
        return int(self.distances[-1])

    @property
    def trace_length(self) -> int:
        """The profiled trace's length, as the profile implies it: distinct ids / P(first touch)."""
        return max(self.unique_ids.size, round(self.unique_ids.size / self.cumulative[0]))

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, StackDistanceProfile)
            and np.array_equal(self.unique_ids, other.unique_ids)
            and np.array_equal(self.distances, other.distances)
            and np.array_equal(self.cumulative, other.cumulative)
        )

    __hash__ = None


def previous_access(trace: np.ndarray) -> np.ndarray:
    """[n] the index of the previous access to the same id, or -1 for a first access."""
    trace = np.asarray(trace)
    order = np.argsort(trace, kind="stable")
    ordered = trace[order]
    previous = np.full(trace.shape[0], -1, np.int64)
    repeat = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
    previous[order[repeat]] = order[repeat - 1]
    return previous


def _count_earlier_at_least(
    values: np.ndarray, times: np.ndarray, bounds: np.ndarray
) -> np.ndarray:
    """For each query q: #{j < times[q] : values[j] >= bounds[q]}, with values in [-1, n)."""
    n = values.shape[0]
    width = n + 1  # values + 1 lie in [0, n]: one key range of this width per block
    shifted = values.astype(np.int64) + 1
    positions = np.arange(n, dtype=np.int64)
    counts = np.zeros(times.shape[0], np.int64)
    level = 0
    while (1 << level) <= n:
        # [0, t) is the union, over the set bits k of t, of the aligned block (t >> k) - 1 of
        # size 2^k: count the values >= bound in that block with one sorted array per level.
        selected = np.flatnonzero((times >> level) & 1)
        if selected.size:
            keys = np.sort((positions >> level) * width + shifted)
            block = (times[selected] >> level) - 1
            low = np.searchsorted(keys, block * width + bounds[selected] + 1)
            # Blocks left of t are full: (block + 1) * 2^k keys lie below the next block's range.
            counts[selected] += ((block + 1) << level) - low
        level += 1
    return counts


def stack_distances(trace: np.ndarray) -> np.ndarray:
    """[n] int64 LRU stack distance of every access of `trace` (0 for a first access)."""
    trace = np.asarray(trace)
    if trace.ndim != 1:
        raise ValueError(f"A trace is one-dimensional; got shape {trace.shape}.")
    previous = previous_access(trace)
    distances = np.zeros(trace.shape[0], np.int64)
    repeats = np.flatnonzero(previous >= 0)
    if repeats.size:
        # No access strictly between p and t re-accesses x itself, so every j in (p, t) with
        # prev(j) >= p is a repeat within the window: t - p - that count distinct ids remain.
        earlier = _count_earlier_at_least(previous, repeats, previous[repeats])
        distances[repeats] = repeats - previous[repeats] - earlier
    return distances


def lru_hits(trace: np.ndarray, capacity_rows: int) -> np.ndarray:
    """[n] bool: which accesses hit a fully associative LRU cache of `capacity_rows` rows."""
    distances = stack_distances(trace)
    return (distances > 0) & (distances <= capacity_rows)


def profile_trace(trace: np.ndarray) -> StackDistanceProfile:
    """The stack-distance profile of `trace` (the reference's `trace_profile`, unpadded)."""
    trace = np.asarray(trace, np.int64)
    if trace.size == 0:
        raise ValueError("Cannot profile an empty trace.")
    distances = stack_distances(trace)
    values, counts = np.unique(distances, return_counts=True)
    return StackDistanceProfile(
        unique_ids=trace[distances == 0],
        distances=values.astype(np.int64),
        cumulative=np.cumsum(counts) / trace.size,  # the last is exactly 1.0
    )


def check_profile(profile: StackDistanceProfile, path: str = "<profile>") -> None:
    """Raises IdFileError (line 1, 2 or 3 of the file) unless `profile` is well formed."""
    unique_ids, distances, cumulative = profile.unique_ids, profile.distances, profile.cumulative
    if unique_ids.size == 0 or distances.size == 0:
        raise IdFileError(path, "empty list", line=1 if unique_ids.size == 0 else 2)
    if unique_ids.min() < 0:
        raise IdFileError(path, f"negative id {int(unique_ids.min())}", line=1)
    if np.unique(unique_ids).size != unique_ids.size:
        values, counts = np.unique(unique_ids, return_counts=True)
        raise IdFileError(
            path, f"id {int(values[counts > 1][0])} appears twice; ids must be distinct", line=1
        )
    if distances[0] != 0 or np.any(np.diff(distances) <= 0):
        raise IdFileError(
            path,
            f"stack distances must be strictly ascending integers starting at 0; got "
            f"{_preview(distances)}",
            line=2,
        )
    if distances[-1] > unique_ids.size:
        raise IdFileError(
            path,
            f"stack distance {int(distances[-1])} exceeds the {unique_ids.size} distinct ids of "
            "line 1 (a stack distance counts distinct ids)",
            line=2,
        )
    if cumulative.size != distances.size:
        raise IdFileError(
            path,
            f"{cumulative.size} cumulative frequencies for {distances.size} stack distances "
            "(line 2); there must be one per distance",
            line=3,
        )
    if (
        not np.all(np.isfinite(cumulative))
        or cumulative[0] <= 0
        or np.any(np.diff(cumulative) < 0)
        or abs(cumulative[-1] - 1.0) > CUMULATIVE_TOLERANCE
    ):
        raise IdFileError(
            path,
            f"cumulative frequencies must be non-decreasing in (0, 1] and end at 1 (the first is "
            f"the share of first touches, never 0); got "
            f"{_preview(cumulative)}",
            line=3,
        )


def regenerate(profile: StackDistanceProfile, count: int, rng: np.random.Generator) -> np.ndarray:
    """[count] int64 ids regenerated from `profile` (the reference's `trace_generate_lru`).

    One uniform draw per id, in order; the stream starts from the profile's initial state (all
    ids unseen), so two calls with equally seeded generators give the same ids. The LRU stack is
    held as a Fenwick tree over access times (the id at depth d is the live access time of rank
    live - d + 1), so a move costs O(log count) whatever the depth: a few microseconds per id.
    """
    if count <= 0:
        return np.zeros(0, np.int64)
    draws = rng.random(count)
    distances_list = profile.distances.tolist()
    cumulative_list = profile.cumulative.tolist()
    last = len(distances_list) - 1
    free = profile.distances[np.minimum(np.searchsorted(profile.cumulative, draws), last)]
    free_list, draws_list = free.tolist(), draws.tolist()
    unique_ids = profile.unique_ids.tolist()
    max_distance = distances_list[-1]
    out = [0] * count
    tree = [0] * (count + 1)  # Fenwick tree over times 1..count: 1 at each id's last access
    row_at = [0] * (count + 1)  # the id accessed at each time
    highest_step = 1 << (count.bit_length() - 1)
    live = 0  # ids on the stack
    introduced = 0  # distance-0 draws so far (the reference's `i`)
    for time in range(1, count + 1):
        if introduced < max_distance:  # warm-up: only distances <= ids introduced so far
            allowed = bisect.bisect_right(distances_list, introduced) - 1
            scaled = draws_list[time - 1] * cumulative_list[allowed]
            distance = distances_list[min(bisect.bisect_left(cumulative_list, scaled), last)]
        else:
            distance = free_list[time - 1]
        if distance == 0 and introduced < len(unique_ids):  # the next unseen id
            row = unique_ids[introduced]
            introduced += 1
            live += 1
        else:
            if distance == 0:  # every id seen: the least recently used one comes back
                introduced += 1
                rank = 1
            else:  # the distance-th most recent id
                rank = live - distance + 1
            slot, step = 0, highest_step
            while step:  # the time of the rank-th oldest live access
                if slot + step <= count and tree[slot + step] < rank:
                    slot += step
                    rank -= tree[slot]
                step >>= 1
            slot += 1
            row = row_at[slot]
            while slot <= count:
                tree[slot] -= 1
                slot += slot & -slot
        row_at[time] = row
        slot = time
        while slot <= count:
            tree[slot] += 1
            slot += slot & -slot
        out[time - 1] = row
    return np.asarray(out, np.int64)


# ---------------------------------------------------------------------------------------------
# Files.


def _preview(values: np.ndarray, limit: int = 6) -> str:
    shown = ", ".join(str(value) for value in values[:limit].tolist())
    return f"[{shown}{', ...' if values.size > limit else ''}]"


def _read_lines(path: str, what: str) -> list[str]:
    try:
        with open(path) as file:
            return file.read().splitlines()
    except FileNotFoundError:
        raise IdFileError(path, f"no such {what} file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise IdFileError(path, f"cannot read the {what} file: {error}") from None


def _parse_integers(path: str, text: str, line: int) -> list[int]:
    values = []
    for token in text.replace(",", " ").split():
        try:
            value = int(token)
        except ValueError:
            raise IdFileError(path, f"{token!r} is not an integer", line=line) from None
        if not 0 <= value <= MAX_ID:
            raise IdFileError(
                path, f"{value} is not an id: ids are integers in [0, {MAX_ID}]", line=line
            )
        values.append(value)
    return values


def _parse_floats(path: str, text: str, line: int) -> list[float]:
    values = []
    for token in text.replace(",", " ").split():
        try:
            values.append(float(token))
        except ValueError:
            raise IdFileError(path, f"{token!r} is not a number", line=line) from None
    return values


def _format(values) -> str:
    return SEPARATOR.join(repr(value) for value in values)


def read_trace(path: str, binary: bool = False) -> np.ndarray:
    """[n] int64 ids of a trace file (text: ids separated by commas and/or white space)."""
    if binary:
        try:
            raw = np.fromfile(path, dtype="<u8")
        except FileNotFoundError:
            raise IdFileError(path, "no such trace file") from None
        except (OSError, ValueError) as error:
            raise IdFileError(path, f"cannot read the binary trace file: {error}") from None
        size = os.path.getsize(path)
        if size % 8:
            raise IdFileError(path, f"{size} bytes is not a whole number of 8-byte uint64 ids")
        if raw.size and raw.max() > MAX_ID:
            position = int(np.argmax(raw > MAX_ID))
            raise IdFileError(
                path,
                f"id number {position} (byte {8 * position}) is {int(raw[position])}, "
                f"above the largest id this reader takes, {MAX_ID}",
            )
        trace = raw.astype(np.int64)
    else:
        ids = []
        for number, text in enumerate(_read_lines(path, "trace"), start=1):
            ids.extend(_parse_integers(path, text, number))
        trace = np.asarray(ids, np.int64)
    if trace.size == 0:
        raise IdFileError(path, "the trace holds no ids")
    return trace


def write_trace(path: str, trace: np.ndarray, binary: bool = False) -> None:
    """Writes `trace` in the reference's format: one ", "-separated line, or raw uint64."""
    trace = np.asarray(trace, np.int64)
    if trace.size and trace.min() < 0:
        raise ValueError(f"Trace ids must be non-negative; got {int(trace.min())}.")
    if binary:
        trace.astype("<u8").tofile(path)
    else:
        with open(path, "w") as file:
            file.write(_format(trace.tolist()))


def read_profile(path: str) -> StackDistanceProfile:
    """The profile in a dist_emb file (three lines: ids, stack distances, cumulative)."""
    lines = _read_lines(path, "profile")
    extra = [number for number, text in enumerate(lines[3:], start=4) if text.strip()]
    if len(lines) < 3 or extra:
        raise IdFileError(
            path,
            f"a profile file holds exactly 3 lines (distinct ids, stack distances, cumulative "
            f"frequencies); found {len(lines)}",
            line=extra[0] if extra else len(lines) + 1,
        )
    profile = StackDistanceProfile(
        unique_ids=np.asarray(_parse_integers(path, lines[0], 1), np.int64),
        distances=np.asarray(_parse_integers(path, lines[1], 2), np.int64),
        cumulative=np.asarray(_parse_floats(path, lines[2], 3), np.float64),
    )
    check_profile(profile, path)
    return profile


def write_profile(path: str, profile: StackDistanceProfile) -> None:
    """Writes `profile` exactly as the reference's `write_dist_to_file` does."""
    check_profile(profile, path)
    with open(path, "w") as file:
        file.write(_format(profile.unique_ids.tolist()) + "\n")
        file.write(_format(profile.distances.tolist()) + "\n")
        file.write(_format(profile.cumulative.tolist()) + "\n")
