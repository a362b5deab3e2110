"""DIN: the Deep Interest Network (Zhou et al., KDD 2018) at DeepRecSys's table sizes.

Tables (dim 32, from DeepRecSys's `models/configs/din.json`, Gupta et al., ISCA 2020): user profile
1,000,000 rows, items 10,000,000 rows (the candidate item and the behaviours share them),
categories 100,000 rows (shared likewise), context 10,000,000 rows; 2.7 GB of float32 tables. The
user profile and context are bags of 3 ids each (DeepRecSys's 3 lookups per table); the behaviour
sequence holds up to S = 100 (item, category) pairs, their lengths long-tailed (log-normal,
median 20: `recjax.inputs.synthetic.lognormal_lengths`). The architecture is the paper's, not
DeepRecSys's: local activation unit 256-80-40-1 with Dice over [h, c, h - c, h * c], no softmax,
MLP 192-200-80-1 with Dice (see docs/design/din-dien.md).

Benchmark:
    python -m benchmarks.latency --model=din --modes=jit,eager,torch
    python -m benchmarks.breakdown --model=din
    python -m benchmarks.latency --model=din-tiny --override=sequence_length=50
"""

from recjax.models.behaviour_sequence import behaviour_sequence_inputs
from recjax.models.din import DINConfig

SIZES = {
    "sequence_length": 100,
    "dim": 32,
    "profile_rows": 1_000_000,
    "item_rows": 10_000_000,
    "category_rows": 100_000,
    "context_rows": 10_000_000,
    "profile_lookups": 3,
    "context_lookups": 3,
}


def din() -> DINConfig:
    tables, features = behaviour_sequence_inputs(**SIZES)
    return DINConfig(
        name="din",
        tables=tables,
        features=features,
        dense_features=0,
        sequence_length=SIZES["sequence_length"],
    )


PRESETS = {"din": din}
