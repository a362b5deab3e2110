"""Figures as PNG and SVG files and as TensorBoard images: what TensorBoard's Images tab reads."""

import glob
import io
import os

import pytest

pytest.importorskip("matplotlib")

from matplotlib import image as matplotlib_image  # noqa: E402
from tensorboard import context  # noqa: E402
from tensorboard.backend.event_processing import (
    data_provider,  # noqa: E402
    plugin_event_accumulator,  # noqa: E402
    plugin_event_multiplexer,  # noqa: E402
)
from tensorboard.compat.proto import summary_pb2  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

from recjax.reporting import figures  # noqa: E402
from recjax.reporting.figures import latency, output  # noqa: E402
from recjax.reporting.figures.results import RunResults, load_run  # noqa: E402
from recjax.reporting.summary_writer import SummaryWriter, png_size  # noqa: E402
from tests.reporting.figures.recorded import as_run_folder, recorded  # noqa: E402


def read_images(logdir: str) -> dict[str, list[tuple[int, int, bytes]]]:
    """{tag: [(width, height, PNG) per event]} of the image-plugin summaries in `logdir`, loaded by
    the accumulator TensorBoard itself uses."""
    events = plugin_event_accumulator.EventAccumulator(logdir)
    events.Reload()
    images = {}
    for tag in events.PluginTagToContent("images"):
        assert events.SummaryMetadata(tag).data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
        images[tag] = []
        for event in events.Tensors(tag):
            width, height, png = tensor_util.make_ndarray(event.tensor_proto).tolist()
            images[tag].append((int(width), int(height), png))
    return images


def test_an_image_summary_reads_back_as_the_same_image(tmp_path):
    png = output.png_bytes(latency.draw([recorded("latency-rmc1-tiny")]))
    with SummaryWriter(str(tmp_path)) as writer:
        writer.image("figures/latency", png, step=0)
    assert read_images(str(tmp_path)) == {"figures/latency": [(*png_size(png), png)]}
    pixels = matplotlib_image.imread(io.BytesIO(png))
    width, height = png_size(png)
    assert pixels.shape[:2] == (height, width) and width == 150 * 4.4  # one panel at 150 dpi


def test_png_size_refuses_what_is_not_a_png():
    with pytest.raises(ValueError, match="Not a PNG image"):
        png_size(b"<?xml version='1.0'?><svg></svg>")


def test_the_images_tab_serves_each_runs_own_figure(tmp_path):
    """TensorBoard's data provider (what the Images tab asks) finds one image per run: the run's
    own figure, drawn from it alone."""
    folders = [
        as_run_folder(name, tmp_path / "runs")
        for name in ("latency-rmc1-tiny", "latency-rmc3-tiny", "breakdown-rmc2-tiny")
    ]
    figures.write_figures(figures.find_runs(folders))
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path / "runs"))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path / "runs"))
    ctx = context.RequestContext()
    served = provider.read_blob_sequences(
        ctx, experiment_id="", plugin_name="images", downsample=10
    )
    assert {run: list(tags) for run, tags in served.items()} == {
        "latency-rmc1-tiny": ["figures/latency"],
        "latency-rmc3-tiny": ["figures/latency"],
        "breakdown-rmc2-tiny": ["figures/breakdown"],
    }
    for folder in folders:
        run = load_run(folder)
        (datum,) = served[os.path.basename(folder)][f"figures/{run.benchmark}"]
        png = provider.read_blob(ctx, blob_key=datum.values[2].blob_key)
        own = figures.kind_module(run.benchmark).draw([run])
        assert png == output.png_bytes(own)


def test_drawing_again_replaces_the_runs_figure_event_file(tmp_path):
    folder = as_run_folder("embedding-rmc1-tiny", tmp_path)
    first = figures.write_run_figures(folder).event_files
    second = figures.write_run_figures(folder).event_files
    assert glob.glob(os.path.join(folder, "*tfevents*")) == second != first
    assert len(read_images(folder)["figures/embedding"]) == 1


def test_files_go_into_out_or_the_deepest_folder_holding_the_runs(tmp_path):
    runs_folder = tmp_path / "runs"
    folders = [
        as_run_folder(name, runs_folder / "latency")
        for name in ("latency-rmc1-tiny", "latency-rmc3-tiny")
    ]
    single = as_run_folder("embedding-rmc1-tiny", runs_folder / "embedding")
    machine = runs_folder / "machine"
    machine.mkdir()
    (machine / "results.json").write_text('{"benchmark": "machine", "ceilings": []}')
    runs = figures.find_runs([str(runs_folder)])
    written = figures.write_figures(runs, tensorboard=False)
    assert written.files == [
        str(runs_folder / "latency" / "latency.png"),
        str(runs_folder / "latency" / "latency.svg"),
        os.path.join(single, "embedding.png"),
        os.path.join(single, "embedding.svg"),
    ]
    assert [run.benchmark for run in written.skipped] == ["machine"] and written.event_files == []
    assert all(not glob.glob(os.path.join(folder, "*tfevents*")) for folder in folders)
    out = tmp_path / "out"
    written = figures.write_figures(runs, out=str(out), tensorboard=False)
    expected = ["embedding.png", "embedding.svg", "latency.png", "latency.svg"]
    assert sorted(os.listdir(out)) == expected
    with open(out / "latency.svg") as file:
        assert "<svg" in file.read(1000)
    with pytest.raises(figures.NoCommonFolderError, match="share no folder but the root"):
        figures.common_folder(
            [RunResults("/a/results.json", {}), RunResults("/b/results.json", {})]
        )


def test_the_same_results_give_the_same_files(tmp_path):
    run = recorded("breakdown-rmc3-tiny")
    first = output.save(figures.kind_module("breakdown").draw([run]), str(tmp_path / "1"), "b")
    second = output.save(figures.kind_module("breakdown").draw([run]), str(tmp_path / "2"), "b")
    for a, b in zip(first, second, strict=True):
        with open(a, "rb") as file_a, open(b, "rb") as file_b:
            assert file_a.read() == file_b.read(), a
