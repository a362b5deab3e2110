"""TensorBoard event files written with the `tensorboard` package alone (no TensorFlow).

`flax.metrics.tensorboard` and `clu.metric_writers` import TensorFlow; the tensorboard package's
own `EventFileWriter` and its plugins' `*_pb` helpers write every summary recjax needs.
"""

import struct
import time
from collections.abc import Mapping

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.hparams.summary_v2 import hparams_pb
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.plugins.text.summary_v2 import text_pb
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

HParamValue = bool | int | float | str

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, from its header; ValueError if `png` is not a PNG."""
    if len(png) < 24 or not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError(f"Not a PNG image: starts with {png[:16]!r}.")
    return struct.unpack(">II", png[16:24])


def image_pb(tag: str, png: bytes) -> summary_pb2.Summary:
    """An image summary as TensorBoard's image plugin stores it (what tf.summary.image writes): a
    string tensor [width, height, PNG bytes] under the plugin's metadata."""
    width, height = png_size(png)
    tensor = tensor_util.make_tensor_proto(
        [str(width).encode(), str(height).encode(), png], dtype=np.object_
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=tag,
        metadata=image_metadata.create_summary_metadata(display_name=tag, description=""),
        tensor=tensor,
    )
    return summary


class SummaryWriter:
    """Writes scalars, histograms, text, images and hparams into one event file under `logdir`.

    Example:
        >>> with SummaryWriter("runs/example") as writer:
        ...     writer.scalar("jit/latency_ms/p50", 6.7, step=64)
    """

    def __init__(self, logdir: str, filename_suffix: str = ""):
        self._writer = EventFileWriter(logdir, filename_suffix=filename_suffix)

    def _write(self, summary, step: int) -> None:
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._writer.add_event(event)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._write(scalar_pb(tag, float(value)), step)

    def histogram(self, tag: str, values: np.ndarray, step: int, buckets: int = 30) -> None:
        self._write(histogram_pb(tag, np.asarray(values, np.float64), buckets=buckets), step)

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        self._write(text_pb(tag, markdown), step)

    def image(self, tag: str, png: bytes, step: int = 0) -> None:
        """A PNG image, shown in TensorBoard's Images tab."""
        self._write(image_pb(tag, png), step)

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
