r"""Turns a raw id trace into an LRU stack-distance profile that --ids=trace:PATH regenerates from.

    python -m benchmarks.ids_profile --trace=input/trace.log --out=input/dist_emb_0.log
    python -m benchmarks.ids_profile --trace=ids.bin --trace_binary --out=profile.log
    # a generated trace (written to --trace first), e.g. Zipf 1.05 over 500,000 rows:
    python -m benchmarks.ids_profile --generate=zipf:1.05 --rows=500000 --lookups=1000000 \
        --trace=/tmp/zipf_trace.log --out=/tmp/zipf_profile.log

Both files are in the reference DLRM's formats (facebookresearch/dlrm, dlrm_data_pytorch.py):
the trace one ", "-separated line of ids (or raw uint64 with --trace_binary), the profile its
three-line dist_emb file, which its --data-trace-file reads too. See
recjax/inputs/stack_distances.py for the method and docs/design/id-distributions.md for the use.
"""

import os

import numpy as np
from absl import app, flags

from recjax.inputs import stack_distances
from recjax.inputs.features import TableConfig
from recjax.inputs.id_distributions import TraceFiles, parse_distribution

_TRACE = flags.DEFINE_string(
    "trace", None, "The id trace to profile (with --generate: where the generated trace goes)."
)
_OUT = flags.DEFINE_string("out", None, "Where the profile (dist_emb format) is written.")
_TRACE_BINARY = flags.DEFINE_bool(
    "trace_binary",
    False,
    "The trace is raw little-endian uint64 (the reference's --trace-file-binary-type) instead of "
    "text.",
)
_GENERATE = flags.DEFINE_string(
    "generate",
    None,
    "First write a trace drawn from this id distribution (uniform or zipf:ALPHA) to --trace.",
)
_ROWS = flags.DEFINE_integer(
    "rows", None, "With --generate: rows of the table the ids are drawn over.", lower_bound=1
)
_LOOKUPS = flags.DEFINE_integer(
    "lookups", 1_000_000, "With --generate: ids in the generated trace.", lower_bound=1
)
_SEED = flags.DEFINE_integer("seed", 0, "With --generate: seed of the generated trace.")
flags.mark_flags_as_required(["trace", "out"])

# With --generate, a Zipf trace's hot rows are placed by the permutation of this table name.
GENERATED_TABLE = "generated_trace"


def _generate_trace() -> np.ndarray:
    try:
        distribution = parse_distribution(_GENERATE.value)
    except ValueError as error:
        raise app.UsageError(f"--generate={_GENERATE.value}: {error}") from error
    if isinstance(distribution, TraceFiles):
        raise app.UsageError(
            f"--generate={_GENERATE.value}: generate from uniform or zipf:ALPHA; to regenerate "
            "from a profile, use --ids=trace:PATH in a benchmark."
        )
    if _ROWS.value is None:
        raise app.UsageError("--generate needs --rows, the rows the ids are drawn over.")
    table = TableConfig(GENERATED_TABLE, _ROWS.value, dim=1)
    rng = np.random.default_rng(_SEED.value)
    return distribution.sample(table, _LOOKUPS.value, rng)


def _make_parent(path: str) -> None:
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as error:
        raise app.UsageError(f"Cannot create the folder of {path!r}: {error}") from error


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _GENERATE.value is None and (_ROWS.present or _LOOKUPS.present or _SEED.present):
        raise app.UsageError("--rows, --lookups and --seed apply only with --generate.")
    if _GENERATE.value is not None:
        trace = _generate_trace()
        _make_parent(_TRACE.value)
        stack_distances.write_trace(_TRACE.value, trace, binary=_TRACE_BINARY.value)
        print(
            f"trace:   {len(trace):,} ids drawn from {_GENERATE.value} over {_ROWS.value:,} rows "
            f"(seed {_SEED.value}) written to {_TRACE.value}"
        )
    try:
        trace = stack_distances.read_trace(_TRACE.value, binary=_TRACE_BINARY.value)
    except stack_distances.IdFileError as error:
        raise app.UsageError(f"--trace: {error}") from error
    profile = stack_distances.profile_trace(trace)
    _make_parent(_OUT.value)
    stack_distances.write_profile(_OUT.value, profile)
    new = float(profile.cumulative[0])
    print(
        f"profile: {len(trace):,} lookups of {profile.unique_ids.size:,} distinct ids "
        f"(ids {int(profile.unique_ids.min())} to {int(profile.unique_ids.max())}); "
        f"{profile.distances.size:,} distinct stack distances, the largest "
        f"{profile.max_distance:,}; {new:.1%} of lookups are first touches"
    )
    print(f"written: {_OUT.value} (use it with --ids=trace:{_OUT.value})")


if __name__ == "__main__":
    app.run(main)
