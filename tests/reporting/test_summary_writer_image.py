"""SummaryWriter.image: a PNG written with the tensorboard package alone reads back as an image."""

import os
import struct
import zlib

import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.util import tensor_util

from recjax.reporting.summary_writer import SummaryWriter, png_size


def tiny_png(width: int, height: int) -> bytes:
    """An RGB PNG built by hand from the format's definition (no imaging library)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + bytes([255, 0, 0]) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_an_image_reads_back_as_the_image_plugins_width_height_png(tmp_path):
    png = tiny_png(3, 2)
    assert png_size(png) == (3, 2)
    with SummaryWriter(str(tmp_path), filename_suffix=".figures") as writer:
        writer.image("figures/example", png, step=7)
    (name,) = os.listdir(tmp_path)
    assert "tfevents" in name and name.endswith(".figures")
    events = plugin_event_accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    assert list(events.PluginTagToContent(image_metadata.PLUGIN_NAME)) == ["figures/example"]
    metadata = events.SummaryMetadata("figures/example")
    assert metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    (event,) = events.Tensors("figures/example")
    assert event.step == 7
    assert tensor_util.make_ndarray(event.tensor_proto).tolist() == [b"3", b"2", png]


def test_only_pngs_are_written(tmp_path):
    with SummaryWriter(str(tmp_path)) as writer, pytest.raises(ValueError, match="Not a PNG"):
        writer.image("figures/example", b"GIF89a" + bytes(30))
