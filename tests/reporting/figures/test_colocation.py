"""The co-location figure: per-instance p50 slowdown and aggregate throughput against N."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from recjax.reporting.figures import colocation  # noqa: E402
from tests.reporting.figures.recorded import by_gid, one, raw, recorded  # noqa: E402

NAMES = ("colocation-rmc1-tiny-rows0.5", "colocation-rmc3-tiny-rows0.5")
PRESETS = ("rmc1-tiny-rows0.5", "rmc3-tiny-rows0.5")


def test_slowdown_and_throughput_one_line_per_preset():
    slowdown_panel, throughput_panel = colocation.draw([recorded(name) for name in NAMES]).axes
    for name, preset in zip(NAMES, PRESETS, strict=True):
        runs = sorted(raw(name)["results"], key=lambda run: run["instances"])
        counts = [run["instances"] for run in runs]
        assert counts == [1, 2]
        base_p50 = runs[0]["per_instance"][0]["p50_ms"]
        mean_slowdown = [
            np.mean([i["p50_ms"] / base_p50 for i in run["per_instance"]]) for run in runs
        ]
        line = one(slowdown_panel, f"{preset}/slowdown")
        np.testing.assert_array_equal(line.get_xdata(), counts)
        np.testing.assert_allclose(line.get_ydata(), mean_slowdown)
        instances = one(slowdown_panel, f"{preset}/instances")
        np.testing.assert_array_equal(instances.get_xdata(), [1, 2, 2])
        np.testing.assert_allclose(
            instances.get_ydata(), [i["p50_ms"] / base_p50 for r in runs for i in r["per_instance"]]
        )
        throughput = [
            sum(i["throughput_samples_per_s"] for i in run["per_instance"]) for run in runs
        ]
        np.testing.assert_allclose(
            one(throughput_panel, f"{preset}/throughput").get_ydata(), throughput
        )
        np.testing.assert_allclose(
            one(throughput_panel, f"{preset}/ideal").get_ydata(), [throughput[0], 2 * throughput[0]]
        )
    assert list(slowdown_panel.get_xticks()) == [1, 2]


def test_shared_cores_are_ringed():
    def change(data):
        data["results"][1]["oversubscribed"] = True  # N=2

    _, throughput_panel = colocation.draw([recorded(NAMES[0], change)]).axes
    ring = one(throughput_panel, f"{PRESETS[0]}/oversubscribed")
    np.testing.assert_array_equal(ring.get_xdata(), [2])
    _, throughput_panel = colocation.draw([recorded(NAMES[0])]).axes
    assert by_gid(throughput_panel, f"{PRESETS[0]}/oversubscribed") == []


def test_without_an_n1_run_there_is_no_slowdown_line_but_throughput():
    def change(data):
        data["results"] = data["results"][1:]
        for instance in data["results"][0]["per_instance"]:
            instance.update(slowdown_p50=None, slowdown_p99=None)

    slowdown_panel, throughput_panel = colocation.draw([recorded(NAMES[0], change)]).axes
    assert by_gid(slowdown_panel, f"{PRESETS[0]}/slowdown") == []
    np.testing.assert_array_equal(
        one(throughput_panel, f"{PRESETS[0]}/throughput").get_xdata(), [2]
    )
    assert by_gid(throughput_panel, f"{PRESETS[0]}/ideal") == []
