"""The locality of a model's id streams, measured on the ids the generators actually draw.

Per table and batch size (definitions, also in docs/design/id-distributions.md):

  lookups per batch   the table's valid ids in the measured batch (all its features; padding
                      excluded).
  unique rows         the distinct rows among them: the rows one call really gathers.
  hot 1% share        the fraction of lookups that hit the table's hottest 1% of rows
                      (ceil(N / 100) rows), measured on a sample of the table's id stream split in
                      two: rows are ranked by how often the first half looks them up (ties and
                      never-seen rows in row order), the share is counted over the second half.
                      Ranking and counting on separate halves keeps the figure unbiased: a
                      uniform stream gives 1%, not the share of whichever rows a short sample
                      happened to repeat. For a skewed stream a short first half ranks the
                      coldest of the hot rows imperfectly, so the figure is a little below the
                      distribution's own share.
  LRU hit rate        the hit rate of a fully associative LRU cache of C = floor(LLC bytes / row
                      bytes) rows that serves this table alone, over the second half of the same
                      sample, the first half having warmed it. Exact (Mattson's stack
                      distances: a lookup hits iff 1 <= its stack distance <= C), vectorized.
                      It is an upper bound on what the table gets in a real run, where all
                      tables, the dense weights and the activations share the LLC.
                      `cache_filled` says whether the warm-up half touched at least min(C, N)
                      distinct rows (N the table's rows): the cache was full, or held every row
                      of a table that fits. When it did not (an LLC larger than the sample's
                      working set), no row was ever evicted and the figure is that of the
                      sample, not of the steady state: raise the sample size to see the latter.

The sample: 8 x min(C, N) lookups, at least MIN_SAMPLE_LOOKUPS and two batches' worth, at most
`max_sample_lookups` (2^20 by default), of the table's id stream, as
consecutive fresh batches would bring them: independent draws for uniform and Zipf ids, one
stretch of the regenerated trace for a trace profile; drawn with a generator of its own (not the
measured batch's). Tables whose streams are identically distributed (same distribution, rows and
row bytes: every table of a DLRM preset) are sampled once, on the first of them (`measured_on`);
a Zipf table's permutation does not change these figures, which do not depend on where the hot
rows lie.
"""

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from recjax.inputs.features import Features, TableConfig
from recjax.inputs.id_distributions import IdDistribution, Uniform
from recjax.inputs.stack_distances import lru_hits
from recjax.inputs.synthetic import table_columns, valid_positions
from recjax.models.family import ModelConfig

HOT_FRACTION = 0.01
# The most lookups per sampled table: about a second of stack-distance work on one core.
DEFAULT_SAMPLE_LOOKUPS = 2**20
MIN_SAMPLE_LOOKUPS = 2**16
# A warm-up half of 4 x the cache's rows reaches the steady state of a uniform stream.
SAMPLE_PER_CACHE_ROW = 8
# spawn_key of the sample generators: apart from synthetic_features' per-table generators.
_SAMPLE_KEY = 15


@dataclasses.dataclass(frozen=True)
class TableLocality:
    """The locality figures of one table at one batch size (see the module docstring)."""

    table: str
    ids: str
    batch_size: int
    lookups_per_batch: int
    unique_rows_per_batch: int
    hot_rows: int
    hot_share: float
    cache_rows: int
    lru_hit_rate: float
    cache_filled: bool
    sample_lookups: int
    measured_on: str

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _StreamFigures:
    hot_share: float
    lru_hit_rate: float
    cache_filled: bool
    sample_lookups: int


def hot_share(first: np.ndarray, second: np.ndarray, num_rows: int) -> tuple[float, int]:
    """(share of `second` in the ceil(1% of num_rows) rows most frequent in `first`, those rows)."""
    hot_rows = max(1, math.ceil(HOT_FRACTION * num_rows))
    rows, counts = np.unique(first, return_counts=True)
    if rows.size >= hot_rows:
        hot = rows[np.lexsort((rows, -counts))[:hot_rows]]
    else:  # every row seen is hot; fill up with never-seen rows, in row order
        unseen = np.setdiff1d(np.arange(min(num_rows, hot_rows + rows.size)), rows)
        hot = np.concatenate([rows, unseen[: hot_rows - rows.size]])
    return float(np.isin(second, hot).mean()) if second.size else math.nan, hot_rows


def _stream_figures(
    table: TableConfig,
    distribution: IdDistribution,
    cache_rows: int,
    sample_lookups: int,
    rng: np.random.Generator,
) -> _StreamFigures:
    sample = distribution.sample(table, sample_lookups, rng)
    half = sample.size // 2
    first, second = sample[:half], sample[half:]
    share, _ = hot_share(first, second, table.num_rows)
    hits = lru_hits(sample, cache_rows)[half:]
    return _StreamFigures(
        hot_share=share,
        lru_hit_rate=float(hits.mean()),
        cache_filled=bool(np.unique(first).size >= min(cache_rows, table.num_rows)),
        sample_lookups=int(sample.size),
    )


def measure_locality(
    config: ModelConfig,
    batch: Features,
    distributions: Mapping[str, IdDistribution] | None,
    seed: int,
    cache_bytes: int,
    max_sample_lookups: int = DEFAULT_SAMPLE_LOOKUPS,
    memo: dict | None = None,
) -> list[TableLocality]:
    """The locality figures of every table of `config` at `batch`'s batch size.

    Args:
      batch: the measured (host) batch, drawn with `distributions`.
      distributions: {table name: IdDistribution}, uniform where a table is not named.
      seed: seeds the stream samples (the figures of a run are reproducible).
      cache_bytes: the last-level cache's size: the simulated LRU holds this many bytes of rows.
      max_sample_lookups: the most lookups per sampled stream (see the module docstring).
      memo: a dict kept across calls (several batch sizes of one run) to sample each stream once:
        the stream figures do not depend on the batch size unless two batches outgrow the sample.
    """
    if cache_bytes <= 0 or max_sample_lookups <= 0:
        raise ValueError(
            f"cache_bytes and max_sample_lookups must be positive; got {cache_bytes} and "
            f"{max_sample_lookups}."
        )
    distributions = distributions or {}
    ids, lengths = np.asarray(batch.ids), np.asarray(batch.lengths)
    measured: dict[tuple, tuple[str, _StreamFigures]] = {} if memo is None else memo
    results = []
    for index, table in enumerate(config.tables):
        distribution = distributions.get(table.name, Uniform())
        columns = table_columns(config, table.name)
        if columns.size == 0:
            continue  # a table no feature looks up
        lookups = ids[:, columns][valid_positions(config, lengths, columns)]
        cache_rows = max(1, cache_bytes // table.row_bytes)
        wanted = max(MIN_SAMPLE_LOOKUPS, SAMPLE_PER_CACHE_ROW * min(cache_rows, table.num_rows))
        size = max(min(wanted, max_sample_lookups), 2 * lookups.size, 2)
        key = (distribution.describe(), table.num_rows, table.row_bytes, size, cache_rows, seed)
        if key not in measured:
            sequence = np.random.SeedSequence(seed, spawn_key=(_SAMPLE_KEY, index))
            rng = np.random.default_rng(sequence)
            figures = _stream_figures(table, distribution, cache_rows, size, rng)
            measured[key] = (table.name, figures)
        measured_on, figures = measured[key]
        results.append(
            TableLocality(
                table=table.name,
                ids=distribution.describe(),
                batch_size=batch.batch_size,
                lookups_per_batch=int(lookups.size),
                unique_rows_per_batch=int(np.unique(lookups).size),
                hot_rows=max(1, math.ceil(HOT_FRACTION * table.num_rows)),
                hot_share=figures.hot_share,
                cache_rows=cache_rows,
                lru_hit_rate=figures.lru_hit_rate,
                cache_filled=figures.cache_filled,
                sample_lookups=figures.sample_lookups,
                measured_on=measured_on,
            )
        )
    return results


def format_locality(localities: list[TableLocality], cache_note: str) -> str:
    """A fixed-width table, one row per batch size and group of tables with the same figures.

    Unique rows per batch are the mean over the group's tables.
    """
    groups: dict[tuple, list[TableLocality]] = {}
    for item in localities:
        groups.setdefault((item.batch_size, item.measured_on), []).append(item)
    header = (
        f"{'batch':>6}  {'tables':<28}{'ids':<22}{'lookups':>9}{'unique':>10}{'hot 1%':>9}"
        f"{'LRU hit':>9}{'LLC rows':>12}{'filled':>8}"
    )
    lines = [f"locality per table and batch ({cache_note})", header, "-" * len(header)]
    for (batch_size, _), items in groups.items():
        first = items[0]
        tables = first.table if len(items) == 1 else f"{first.table} +{len(items) - 1} alike"
        unique = float(np.mean([item.unique_rows_per_batch for item in items]))
        lines.append(
            f"{batch_size:>6}  {tables:<28}{first.ids[:21]:<22}{first.lookups_per_batch:>9,}"
            f"{unique:>10,.0f}{first.hot_share:>9.1%}{first.lru_hit_rate:>9.1%}"
            f"{first.cache_rows:>12,}{'yes' if first.cache_filled else 'no':>8}"
        )
    return "\n".join(lines)


def write_summaries(writer, localities: list[TableLocality]) -> None:
    """Scalars locality/<table>/<figure> with the batch size as the step (a `SummaryWriter`)."""
    for item in localities:
        for name in ("unique_rows_per_batch", "hot_share", "lru_hit_rate"):
            writer.scalar(f"locality/{item.table}/{name}", getattr(item, name), item.batch_size)
