"""Training any model family: sparse embedding updates, Criteo-format data, metrics, checkpoints.

The public names, one per line; `docs/benchmarks/train.md` explains the method.

    program = TrainProgram(model, optax.adam(1e-3), rowwise_adagrad(0.05))
    state = program.init(model)
    state, metrics = program.step(state, batch)     # batch: Features with labels
"""

from recjax.train.checkpoints import CheckpointMismatchError as CheckpointMismatchError
from recjax.train.checkpoints import TrainCheckpointer as TrainCheckpointer
from recjax.train.checkpoints import restore_model as restore_model
from recjax.train.criteo import CriteoMapping as CriteoMapping
from recjax.train.criteo import criteo_batches as criteo_batches
from recjax.train.data import CriteoSource as CriteoSource
from recjax.train.data import SyntheticSource as SyntheticSource
from recjax.train.embedding_optimizers import EmbeddingOptimizer as EmbeddingOptimizer
from recjax.train.embedding_optimizers import rowwise_adagrad as rowwise_adagrad
from recjax.train.embedding_optimizers import sgd as sgd
from recjax.train.loop import HeldOut as HeldOut
from recjax.train.loop import Trainer as Trainer
from recjax.train.loop import TrainSettings as TrainSettings
from recjax.train.metrics import auc as auc
from recjax.train.planted import write_planted_files as write_planted_files
from recjax.train.step import TrainProgram as TrainProgram
from recjax.train.step import TrainState as TrainState
