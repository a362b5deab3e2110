"""The latency figure: p50 lines, p99 bands, log-log axes, one panel per preset, the p99 target."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from recjax.reporting.figures import latency  # noqa: E402
from recjax.reporting.figures.results import ResultsError  # noqa: E402
from tests.reporting.figures.recorded import by_gid, one, raw, recorded  # noqa: E402

NAMES = ("latency-rmc3-tiny", "latency-rmc1-tiny")  # not alphabetical: panels follow the input


def expected(name: str, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = sorted(
        (row["batch_size"], row["p50_ms"], row["p99_ms"])
        for row in raw(name)["results"]
        if row["mode"] == mode
    )
    return tuple(np.asarray(column) for column in zip(*rows, strict=True))


def test_one_panel_per_preset_one_p50_line_and_p99_band_per_mode():
    figure = latency.draw([recorded(name) for name in NAMES])
    panels = figure.axes
    assert [panel.get_title() for panel in panels] == ["rmc3-tiny", "rmc1-tiny"]
    for panel, name in zip(panels, NAMES, strict=True):
        assert panel.get_xscale() == "log" and panel.get_yscale() == "log"
        for mode in ("jit", "eager"):
            batch_sizes, p50, p99 = expected(name, mode)
            np.testing.assert_array_equal(batch_sizes, [1, 4, 16])
            line = one(panel, f"{mode}/p50")
            np.testing.assert_array_equal(line.get_xdata(), batch_sizes)
            np.testing.assert_allclose(line.get_ydata(), p50)
            np.testing.assert_allclose(one(panel, f"{mode}/p99").get_ydata(), p99)
            # The band's outline runs along p50 and back along p99.
            vertices = one(panel, f"{mode}/band").get_paths()[0].vertices
            for x, low, high in zip(batch_sizes, p50, p99, strict=True):
                at_x = vertices[np.isclose(vertices[:, 0], x), 1]
                assert at_x.min() == pytest.approx(low) and at_x.max() == pytest.approx(high)
    # One color per mode in every panel.
    colors = {panel.get_title(): one(panel, "jit/p50").get_color() for panel in panels}
    assert len(set(colors.values())) == 1


def test_p99_target_and_best_batch_size_per_mode():
    run = recorded("latency-rmc1-tiny")
    bound = raw("latency-rmc1-tiny")["latency_bound"]
    (panel,) = latency.draw([run]).axes
    target = one(panel, "p99_target")
    np.testing.assert_allclose(target.get_ydata(), [bound["p99_target_ms"]] * 2)
    for mode, best in bound["best"].items():
        star = one(panel, f"{mode}/best")
        assert (star.get_xdata()[0], star.get_ydata()[0]) == (best["batch_size"], best["p99_ms"])


def test_no_target_line_without_a_target():
    run = recorded("latency-rmc1-tiny", lambda data: data.update(latency_bound=None))
    (panel,) = latency.draw([run]).axes
    assert by_gid(panel, "p99_target") == [] and by_gid(panel, "jit/best") == []


def test_a_run_of_another_binary_is_refused_naming_its_file():
    run = recorded("breakdown-rmc1-tiny")
    with pytest.raises(ResultsError) as error:
        latency.draw([recorded("latency-rmc1-tiny"), run])
    assert run.path in str(error.value) and "benchmarks.breakdown" in str(error.value)


def test_a_missing_field_is_named_with_its_file():
    run = recorded("latency-rmc1-tiny", lambda data: data["results"][3].pop("p99_ms"))
    with pytest.raises(ResultsError) as error:
        latency.draw([run])
    assert run.path in str(error.value) and "'results[3].p99_ms'" in str(error.value)
