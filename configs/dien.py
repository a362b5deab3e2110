"""DIEN: the Deep Interest Evolution Network (Zhou et al., AAAI 2019) at DeepRecSys's table sizes.

The inputs are DIN's preset's (`configs/din.py`): dim 32, user profile 1,000,000 rows, items
10,000,000 and categories 100,000 rows shared by the candidate and the behaviours, context
10,000,000 rows, S = 100 behaviours with long-tailed lengths. The architecture is the paper's:
GRU 64 -> 64 over the behaviours, bilinear attention with a softmax over the valid positions,
AUGRU 64 -> 64, MLP 192-200-80-1 with Dice; the auxiliary loss (inner product) is for training
only (see docs/design/din-dien.md).

Benchmark:
    python -m benchmarks.latency --model=dien --modes=jit,eager,torch
    python -m benchmarks.breakdown --model=dien
    python -m benchmarks.latency --model=dien --override=recurrence_loop=scan
    python -m benchmarks.latency --model=dien --override=recurrence_block_size=0  # one loop
"""

from configs.din import SIZES
from recjax.models.behaviour_sequence import behaviour_sequence_inputs
from recjax.models.dien import DIENConfig


def dien() -> DIENConfig:
    tables, features = behaviour_sequence_inputs(**SIZES)
    return DIENConfig(
        name="dien",
        tables=tables,
        features=features,
        dense_features=0,
        sequence_length=SIZES["sequence_length"],
        gru_hidden=64,
    )


PRESETS = {"dien": dien}
