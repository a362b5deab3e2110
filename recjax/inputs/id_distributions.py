"""How synthetic inputs draw each table's ids: uniform, Zipf, or regenerated from a trace profile.

A table's ids come from one of:

  uniform        every row equally likely (recjax's default: the worst case for the caches).
  zipf:ALPHA     P(rank k) proportional to k^-ALPHA over ranks 1..N, ALPHA > 0, with the ranks
                 scattered over the rows by a fixed pseudorandom permutation of the table (so the
                 hot rows lie all over the table, as hashed ids do). Exact draws by
                 rejection-inversion (Hoermann & Derflinger, "Rejection-inversion to generate
                 variates from monotone discrete distributions", 1996; the sampler of Apache
                 Commons RNG): O(1) memory and time per draw for any N, vectorized, about 1.1
                 uniform draws per id. The permutation is a 4-round Feistel network over the
                 smallest power-of-4 domain >= N with cycle walking, keyed by the table's name: a
                 bijection of [0, N) computed per id, with no N-sized array.
  trace:PATH     ids regenerated from an LRU stack-distance profile (the reference DLRM's
                 dist_emb file, see `recjax.inputs.stack_distances`), which only holds ids that
                 the profiled trace held. The profile is regenerated once per run into a
                 synthetic trace as long as the profiled one (its distinct ids over the share
                 of first touches, at most MAX_REGENERATED ids) with the reference's generator;
                 a batch's stream for a table is a window of that trace starting at an offset
                 drawn from the batch's generator (read circularly). So a batch is a stretch of
                 realistic traffic, not the start of the trace again: the reference DLRM
                 regenerates from the profile's start at every bag, which makes every bag begin
                 with the trace's first ids.

A spec, as the benchmarks' --ids flag takes it, is a comma-separated list of items: one
distribution without a table name (the default for every table; `uniform` when absent) and any
number of `TABLE=DISTRIBUTION` overrides, for example `zipf:1.05,rmc2_table_3=uniform`. In
`trace:PATH`, `{table}` stands for the table's name and `{index}` for its position in the model
(0-based), so `trace:input/dist_emb_{index}.log` reads the reference DLRM's per-table files
(its dist_emb_j.log with j the table's index); a PATH without them serves every table it is
named for. Paths may not contain commas.

Within a batch, a table's ids are one stream in batch order (sample by sample, and within a
sample feature by feature in the model's order, positions in order; padding excluded). For
uniform and Zipf ids the order does not matter (they are independent draws); a trace window is
laid out in that order. Repeated ids stay repeated: a bag that draws a row twice sums it twice.
"""

import dataclasses
import functools
import math
import zlib
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from recjax.inputs.features import TableConfig
from recjax.inputs.stack_distances import (
    IdFileError,
    StackDistanceProfile,
    read_profile,
    regenerate,
)
from recjax.models.family import ModelConfig

UNIFORM = "uniform"
ZIPF = "zipf"
TRACE = "trace"
ACCEPTED = "uniform, zipf:ALPHA (ALPHA > 0) or trace:PATH (a stack-distance profile file)"
TABLE_PLACEHOLDER = "{table}"
INDEX_PLACEHOLDER = "{index}"
# The Feistel keys of a table's Zipf permutation are drawn from this seed and the table's name.
PERMUTATION_SEED = 15
FEISTEL_ROUNDS = 4
# A profile regenerates into at most this many ids (32 MiB; about 5 to 15 us per id in Python).
MAX_REGENERATED = 2**22
# The seed of every profile's regenerated trace (the same trace for every table it serves).
REGENERATION_SEED = 15


class IdDistribution(Protocol):
    """Draws a table's ids."""

    def describe(self) -> str: ...

    def sample(self, table: TableConfig, count: int, rng: np.random.Generator) -> np.ndarray:
        """[count] int64 ids in [0, table.num_rows), one stream in order."""
        ...


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Every row of the table equally likely."""

    def describe(self) -> str:
        return UNIFORM

    def sample(self, table: TableConfig, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, table.num_rows, size=count, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Zipf: rejection-inversion over ranks, then a keyed permutation of the rows.


def _expm1_over_x(x: np.ndarray) -> np.ndarray:
    """(e^x - 1) / x, 1 at 0."""
    small = np.abs(x) < 1e-8
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 + x / 2.0 * (1.0 + x / 3.0 * (1.0 + x / 4.0)), np.expm1(safe) / safe)


def _log1p_over_x(x: np.ndarray) -> np.ndarray:
    """log(1 + x) / x, 1 at 0."""
    small = np.abs(x) < 1e-8
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x)), np.log1p(safe) / safe)


class _ZipfRanks:
    """Rejection-inversion for P(k) ~ k^-s, k in 1..n (Hoermann & Derflinger 1996).

    h(x) = x^-s is the (unnormalized) density whose integral H(x) = (x^(1-s) - 1) / (1 - s)
    (log x at s = 1) is inverted in closed form; a draw u uniform in (H(1.5) - 1, H(n + 0.5)]
    gives x = H^-1(u) and the candidate k = round(x), accepted when k - x <= `shortcut` or
    u >= H(k + 0.5) - h(k). The accepted k are exactly Zipf distributed.
    """

    def __init__(self, n: int, s: float):
        self.n, self.s = n, s
        self.h_integral_x1 = float(self._h_integral(np.asarray(1.5))) - 1.0
        self.h_integral_n = float(self._h_integral(np.asarray(n + 0.5)))
        self.shortcut = 2.0 - float(
            self._h_integral_inverse(self._h_integral(np.asarray(2.5)) - self._h(np.asarray(2.0)))
        )

    def _h(self, x):
        return np.exp(-self.s * np.log(x))

    def _h_integral(self, x):
        log_x = np.log(x)
        return _expm1_over_x((1.0 - self.s) * log_x) * log_x

    def _h_integral_inverse(self, x):
        t = np.maximum(x * (1.0 - self.s), -1.0)
        return np.exp(_log1p_over_x(t) * x)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """[count] int64 ranks in [1, n]."""
        accepted = []
        remaining = count
        while remaining > 0:
            draws = remaining + remaining // 8 + 16  # acceptance is above 0.9: few rounds
            u = self.h_integral_n + rng.random(draws) * (self.h_integral_x1 - self.h_integral_n)
            x = self._h_integral_inverse(u)
            k = np.clip(np.floor(x + 0.5), 1, self.n)
            keep = (k - x <= self.shortcut) | (u >= self._h_integral(k + 0.5) - self._h(k))
            ranks = k[keep][:remaining].astype(np.int64)
            accepted.append(ranks)
            remaining -= ranks.size
        return np.concatenate(accepted) if accepted else np.zeros(0, np.int64)


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a well-mixed 64-bit hash of uint64 values."""
    z = values
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _feistel_keys(name: str) -> np.ndarray:
    entropy = [PERMUTATION_SEED, zlib.crc32(name.encode())]
    return np.random.SeedSequence(entropy).generate_state(FEISTEL_ROUNDS, np.uint64)


def permute_rows(values: np.ndarray, num_rows: int, name: str) -> np.ndarray:
    """A fixed pseudorandom bijection of [0, num_rows), keyed by `name`, applied to `values`.

    A balanced Feistel network on the smallest domain of 4^h >= num_rows values, walked again
    from any image outside [0, num_rows) until it lands inside (cycle walking: a bijection of
    [0, num_rows) because the network is one of its domain).
    """
    half_bits = (max(1, (num_rows - 1).bit_length()) + 1) // 2
    mask = np.uint64((1 << half_bits) - 1)
    shift = np.uint64(half_bits)
    keys = _feistel_keys(name)

    def encrypt(x: np.ndarray) -> np.ndarray:
        left, right = x >> shift, x & mask
        for key in keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
        return (left << shift) | right

    out = encrypt(np.asarray(values, np.uint64))
    outside = np.flatnonzero(out >= num_rows)
    while outside.size:
        out[outside] = encrypt(out[outside])
        outside = outside[out[outside] >= num_rows]
    return out.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Zipf:
    """P(rank k) ~ k^-alpha, ranks scattered over the rows by a permutation keyed by the table."""

    alpha: float

    def __post_init__(self):
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"A Zipf exponent must be a positive number; got {self.alpha}.")

    def describe(self) -> str:
        return f"{ZIPF}:{self.alpha:g}"

    def ranks(self, num_rows: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """[count] int64 ranks in [0, num_rows): 0 the hottest."""
        return _ZipfRanks(num_rows, self.alpha).sample(count, rng) - 1

    def rows_of_ranks(self, table: TableConfig, ranks: np.ndarray) -> np.ndarray:
        """The rows holding `ranks` in `table` (rank 0 is the hottest row)."""
        return permute_rows(ranks, table.num_rows, table.name)

    def sample(self, table: TableConfig, count: int, rng: np.random.Generator) -> np.ndarray:
        return self.rows_of_ranks(table, self.ranks(table.num_rows, count, rng))


@dataclasses.dataclass(frozen=True, eq=False)
class StackDistanceTrace:
    """Windows of a trace regenerated once from an LRU stack-distance profile."""

    path: str
    profile: StackDistanceProfile

    @functools.cached_property
    def trace(self) -> np.ndarray:
        """[n] the regenerated trace: as long as the profiled one, at most MAX_REGENERATED."""
        length = min(MAX_REGENERATED, self.profile.trace_length)
        return regenerate(self.profile, length, np.random.default_rng(REGENERATION_SEED))

    def describe(self) -> str:
        return f"{TRACE}:{self.path}"

    def check(self, table: TableConfig) -> None:
        """Raises IdFileError (line 1 of the file) if the profile names a row `table` lacks."""
        outside = np.flatnonzero(self.profile.unique_ids >= table.num_rows)
        if outside.size:
            position = int(outside[0])
            raise IdFileError(
                self.path,
                f"id {int(self.profile.unique_ids[position])} (value {position + 1} of the line) "
                f"is beyond the table's {table.num_rows} rows; ids must lie in "
                f"[0, {table.num_rows}) ({outside.size} of the {self.profile.unique_ids.size} "
                "ids do not)",
                line=1,
                table=table.name,
            )

    def sample(self, table: TableConfig, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` consecutive ids of the regenerated trace from a random offset, circularly."""
        trace = self.trace
        start = int(rng.integers(0, trace.size))
        return trace[(start + np.arange(count)) % trace.size]


# ---------------------------------------------------------------------------------------------
# Specs: parsing a --ids value, and resolving it against a model's tables.


@dataclasses.dataclass(frozen=True)
class TraceFiles:
    """`trace:PATH` before it is read: PATH may hold {table} and {index}."""

    path: str

    def path_for(self, table: str, index: int) -> str:
        return self.path.replace(TABLE_PLACEHOLDER, table).replace(INDEX_PLACEHOLDER, str(index))

    def describe(self) -> str:
        return f"{TRACE}:{self.path}"


def parse_distribution(text: str) -> Uniform | Zipf | TraceFiles:
    """One distribution: `uniform`, `zipf:ALPHA` or `trace:PATH` (not yet read)."""
    kind, colon, argument = text.strip().partition(":")
    if kind == UNIFORM and not colon:
        return Uniform()
    if kind == ZIPF and colon:
        try:
            alpha = float(argument)
        except ValueError:
            alpha = math.nan
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(
                f"Id distribution {text!r}: the Zipf exponent must be a positive number; got "
                f"{argument!r}."
            )
        return Zipf(alpha)
    if kind == TRACE and colon:
        if not argument.strip():
            raise ValueError(f"Id distribution {text!r}: trace: needs the path of a profile.")
        return TraceFiles(argument.strip())
    raise ValueError(f"Unknown id distribution {text!r}; expected {ACCEPTED}.")


@dataclasses.dataclass(frozen=True)
class IdSpec:
    """A parsed id spec: a default distribution and per-table overrides.

    Attributes:
      text: the spec as written.
      default: the distribution of every table not overridden.
      overrides: (table name, distribution) pairs.
    """

    text: str
    default: Uniform | Zipf | TraceFiles
    overrides: tuple[tuple[str, Uniform | Zipf | TraceFiles], ...] = ()

    def check_tables(self, config: ModelConfig) -> None:
        """Raises ValueError if an override names a table `config` does not have."""
        names = [table.name for table in config.tables]
        for table, _ in self.overrides:
            if table not in names:
                raise ValueError(
                    f"Id spec {self.text!r} names table {table!r}, which {config.name} does not "
                    f"have; its tables are {names}."
                )

    def resolve(self, config: ModelConfig) -> dict[str, IdDistribution]:
        """{table name: distribution} for every table of `config`, trace profiles read and checked.

        Raises ValueError for an unknown table, and IdFileError (naming the file, the line and
        the table) for a profile that is missing, malformed, or names rows beyond its table.
        """
        self.check_tables(config)
        chosen = dict(self.overrides)
        profiles: dict[str, StackDistanceProfile] = {}
        resolved = {}
        for index, table in enumerate(config.tables):
            spec = chosen.get(table.name, self.default)
            if not isinstance(spec, TraceFiles):
                resolved[table.name] = spec
                continue
            path = spec.path_for(table.name, index)
            if path not in profiles:
                try:
                    profiles[path] = read_profile(path)
                except IdFileError as error:
                    raise error.for_table(table.name) from None
            distribution = StackDistanceTrace(path, profiles[path])
            distribution.check(table)
            resolved[table.name] = distribution
        return resolved


def parse_id_spec(text: str) -> IdSpec:
    """Parses `DIST[,TABLE=DIST...]` (see the module docstring); raises ValueError naming the item.

    An item is an override when it holds `=` before any `:`; the first item without a table is
    the default, and a second one is an error, as is a table named twice.
    """
    default = None
    overrides: dict[str, Uniform | Zipf | TraceFiles] = {}
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise ValueError(f"Empty id spec {text!r}; expected {ACCEPTED}, optionally TABLE=... too.")
    for item in items:
        if not item:
            raise ValueError(f"Id spec {text!r} has an empty item (two commas in a row?).")
        name, equals, rest = item.partition("=")
        if equals and ":" not in name:
            table = name.strip()
            if not table:
                raise ValueError(f"Id spec item {item!r} names no table before '='.")
            if table in overrides:
                raise ValueError(f"Id spec {text!r} names table {table!r} twice.")
            overrides[table] = parse_distribution(rest)
        elif default is not None:
            raise ValueError(
                f"Id spec {text!r} has two defaults ({default.describe()!r} and {item!r}); give "
                "one distribution for every table and TABLE=DISTRIBUTION for the others."
            )
        else:
            default = parse_distribution(item)
    return IdSpec(text, default or Uniform(), tuple(overrides.items()))


def resolve_id_spec(text: str, config: ModelConfig) -> dict[str, IdDistribution]:
    """`parse_id_spec(text).resolve(config)`."""
    return parse_id_spec(text).resolve(config)


def describe(distributions: Mapping[str, IdDistribution] | None, config: ModelConfig) -> dict:
    """{table name: description} of every table of `config` (uniform where none is given)."""
    distributions = distributions or {}
    return {
        table.name: distributions.get(table.name, Uniform()).describe() for table in config.tables
    }
