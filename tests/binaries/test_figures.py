"""benchmarks.figures on recorded runs, a benchmark binary's own --figures (the shared
`draw_figures` every binary calls at its end), and both without matplotlib."""

import glob
import os
import subprocess
import sys

import pytest

from benchmarks import flags as shared
from tests.binaries.binary import REPO, run_binary
from tests.reporting.figures.recorded import as_run_folder

INSTALL = "pip install -e '.[plot]'"
# The latency binary at its quickest: one jit batch size, a few calls.
QUICK_LATENCY = (
    "--model=rmc1-tiny",
    "--modes=jit",
    "--batch_sizes=1,2",
    "--min_iterations=2",
    "--min_seconds=0",
    "--max_seconds=0.1",
    "--warmup=1",
)


def without_matplotlib(tmp_path) -> dict[str, str]:
    """An environment where `import matplotlib` fails, shadowing any installed one."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "matplotlib.py").write_text(
        "raise ImportError('No module named matplotlib (simulated)')\n"
    )
    return {**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{REPO}"}


def run_with(environment: dict[str, str], name: str, *args: str):
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_figure_from_recorded_runs_into_out_and_tensorboard(tmp_path):
    pytest.importorskip("matplotlib")
    runs = tmp_path / "runs"
    names = [
        "latency-rmc1-tiny",
        "breakdown-rmc2-tiny",
        "loadgen-rmc1-tiny",
        "colocation-rmc1-tiny-rows0.5",
        "embedding-rmc1-tiny",
    ]
    folders = [as_run_folder(name, runs) for name in names]
    (runs / "machine").mkdir()
    (runs / "machine" / "results.json").write_text('{"benchmark": "machine", "ceilings": []}')
    out = tmp_path / "out"
    result = run_binary("figures", f"--runs={runs}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    kinds = ("latency", "breakdown", "loadgen", "colocation", "embedding")
    assert sorted(os.listdir(out)) == sorted(
        f"{kind}.{ext}" for kind in kinds for ext in ("png", "svg")
    )
    assert f"drew 5 figures from {len(names)} runs:" in result.stdout
    assert (
        f"skipped: {runs}/machine/results.json (benchmarks.machine has no figure)" in result.stdout
    )
    for folder in folders:
        assert len(glob.glob(os.path.join(folder, "events.out.tfevents.*.figures"))) == 1
        assert f"tensorboard: {folder}/events.out.tfevents." in result.stdout


def test_bad_runs_are_named(tmp_path):
    pytest.importorskip("matplotlib")
    missing = run_binary("figures", f"--runs={tmp_path / 'missing'}")
    assert missing.returncode != 0 and f"{tmp_path / 'missing'}: no such folder" in missing.stderr
    folder = as_run_folder("breakdown-rmc1-tiny", tmp_path)
    path = os.path.join(folder, "results.json")
    with open(path) as file:
        text = file.read()
    with open(path, "w") as file:
        file.write(text.replace('"end_to_end_ms"', '"end_to_end_us"'))
    broken = run_binary("figures", f"--runs={folder}")
    assert broken.returncode != 0
    assert (
        f"error: {path}: this 'breakdown' results file has no field 'results[0].end_to_end_ms'"
        in broken.stderr
    )


def test_a_benchmark_binary_draws_its_own_figure(tmp_path):
    pytest.importorskip("matplotlib")
    from tests.reporting.figures.test_output import read_images

    result = run_binary("latency", *QUICK_LATENCY, f"--logdir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert f"figure:      {tmp_path}/latency.png" in result.stdout
    assert os.path.exists(tmp_path / "latency.svg")
    ((_, _, png),) = read_images(str(tmp_path))["figures/latency"]
    with open(tmp_path / "latency.png", "rb") as file:
        assert file.read() == png


def test_figures_flag_off_draws_nothing(tmp_path, capsys):
    folder = as_run_folder("breakdown-rmc1-tiny", tmp_path)
    shared.draw_figures(folder, enabled=False)
    assert capsys.readouterr().out == "" and os.listdir(folder) == ["results.json"]


def test_figures_flag_on_draws_the_runs_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    folder = as_run_folder("breakdown-rmc1-tiny", tmp_path)
    shared.draw_figures(folder, enabled=True)
    assert capsys.readouterr().out == (
        f"figure:      {folder}/breakdown.png\nfigure:      {folder}/breakdown.svg\n"
    )


def test_without_matplotlib_the_binaries_say_how_to_install_it_and_go_on(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    folder = as_run_folder("breakdown-rmc1-tiny", tmp_path)
    shared.draw_figures(folder, enabled=True)
    printed = capsys.readouterr().out
    assert printed.startswith("figures: not drawn: figures need matplotlib") and INSTALL in printed
    assert os.listdir(folder) == ["results.json"]


def test_without_matplotlib_the_figures_binary_says_how_to_install_it(tmp_path):
    folder = as_run_folder("breakdown-rmc1-tiny", tmp_path)
    result = run_with(without_matplotlib(tmp_path), "figures", f"--runs={folder}")
    assert result.returncode != 0 and INSTALL in result.stderr
