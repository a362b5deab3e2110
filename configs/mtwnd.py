"""Multi-task Wide & Deep (YouTube's ranking model, Zhao et al., RecSys 2019) at DeepRecSys's sizes.

Source: the open-source DeepRecSys model configs (Gupta et al., ISCA 2020, `models/configs/
mtwnd.json`; 4 tasks, as the issue gives them): 41 tables x 500,000 rows and 2 tables x 5,000,000
rows, all 32 dim, one id per table, 512 dense features, shared MLP 1888-1024-512 (input 512 +
43 x 32), four task towers 512-256-128-1; 3.9 GB of float32 tables. recjax ends each tower in a
logit of its own (DeepRecSys stops at a 128-wide ReLU layer) and adds a wide part, one weight per
id of every sparse feature (43 dim-1 tables, 122 MB), whose logit is added to every task's (see
`recjax.models.multitask_wide_deep`). `--override experts=E` turns the shared bottom into MMoE
with E experts of the shared bottom's widths and one softmax gate per task.

Benchmark:
    python -m benchmarks.latency --model=mtwnd --modes=jit,eager,torch
    python -m benchmarks.breakdown --model=mtwnd
    python -m benchmarks.latency --model=mtwnd --override experts=4 --modes=jit,eager,torch
    python -m benchmarks.latency --model=mtwnd-tiny
"""

from recjax.models.multitask_wide_deep import MultiTaskWideDeepConfig
from recjax.models.wide_deep import one_id_features

TASKS = ("task_0", "task_1", "task_2", "task_3")


def mtwnd() -> MultiTaskWideDeepConfig:
    tables, features, wide_tables = one_id_features(
        "mtwnd_table", [500_000] * 41 + [5_000_000] * 2, dim=32
    )
    return MultiTaskWideDeepConfig(
        name="mtwnd",
        tables=tables,
        features=features,
        dense_features=512,
        heads=TASKS,
        shared_mlp=(1024, 512),
        task_mlp=(256, 128, 1),
        wide_tables=wide_tables,
        experts=0,
    )


PRESETS = {"mtwnd": mtwnd}
