"""TensorBoard event files written with the `tensorboard` package alone (no TensorFlow).

`flax.metrics.tensorboard` and `clu.metric_writers` import TensorFlow; the tensorboard package's
own `EventFileWriter` and its plugins' `*_pb` helpers write every summary recjax needs.
"""

import time
from collections.abc import Mapping

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.hparams.summary_v2 import hparams_pb
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.plugins.text.summary_v2 import text_pb
from tensorboard.summary.writer.event_file_writer import EventFileWriter

HParamValue = bool | int | float | str


class SummaryWriter:
    """Writes scalars, histograms, text and hparams into one event file under `logdir`.

    Example:
        >>> with SummaryWriter("runs/example") as writer:
        ...     writer.scalar("jit/latency_ms/p50", 6.7, step=64)
    """

    def __init__(self, logdir: str):
        self._writer = EventFileWriter(logdir)

    def _write(self, summary, step: int) -> None:
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._writer.add_event(event)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._write(scalar_pb(tag, float(value)), step)

    def histogram(self, tag: str, values: np.ndarray, step: int, buckets: int = 30) -> None:
        self._write(histogram_pb(tag, np.asarray(values, np.float64), buckets=buckets), step)

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        self._write(text_pb(tag, markdown), step)

    def hparams(self, values: Mapping[str, HParamValue], trial_id: str) -> None:
        self._write(hparams_pb(dict(values), trial_id=trial_id), step=0)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
