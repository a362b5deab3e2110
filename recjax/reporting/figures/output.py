"""Writing figures: PNG and SVG files, and PNG images in a run's TensorBoard event files.

A run's figure images go into an event file of their own, named `*.figures`, beside the run's
other event files; drawing the figures again replaces that file (and only it), so TensorBoard
shows the latest drawing once.
"""

import io
import os
from collections.abc import Mapping

import matplotlib
from matplotlib.figure import Figure

from recjax.reporting.logdir import EVENT_FILE_MARK
from recjax.reporting.summary_writer import SummaryWriter

DPI = 150
FORMATS = ("png", "svg")
FIGURES_EVENT_SUFFIX = ".figures"
SUMMARY_TAG_PREFIX = "figures/"
# No timestamps or random ids in the files, so drawing the same results twice gives the same
# files (docs/results keeps them under version control).
_STABLE_OUTPUT = {"svg.hashsalt": "recjax", "svg.fonttype": "path"}
_METADATA = {"png": {"Software": None}, "svg": {"Date": None}}


def save(figure: Figure, folder: str, name: str) -> list[str]:
    """Writes <folder>/<name>.png and .svg (creating the folder); returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    with matplotlib.rc_context(_STABLE_OUTPUT):
        for file_format in FORMATS:
            path = os.path.join(folder, f"{name}.{file_format}")
            figure.savefig(path, dpi=DPI, metadata=_METADATA[file_format])
            paths.append(path)
    return paths


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (as `save` writes it)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=_METADATA["png"])
    return buffer.getvalue()


def write_image_summaries(logdir: str, images: Mapping[str, bytes]) -> str:
    """Writes {name: PNG bytes} as TensorBoard images tagged figures/<name> at step 0, into a
    fresh `*.figures` event file in `logdir` (replacing an earlier one); returns its path."""
    for earlier in _figure_event_files(logdir):
        os.remove(earlier)
    with SummaryWriter(logdir, filename_suffix=FIGURES_EVENT_SUFFIX) as writer:
        for name, png in images.items():
            writer.image(SUMMARY_TAG_PREFIX + name, png, step=0)
    (path,) = _figure_event_files(logdir)
    return path


def _figure_event_files(logdir: str) -> list[str]:
    return [
        os.path.join(logdir, file)
        for file in os.listdir(logdir)
        if EVENT_FILE_MARK in file and file.endswith(FIGURES_EVENT_SUFFIX)
    ]
