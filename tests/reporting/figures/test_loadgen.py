"""The loadgen figure: p95 and p99 against offered QPS per sub-batch size, target and best."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from recjax.reporting.figures import loadgen  # noqa: E402
from tests.reporting.figures.recorded import by_gid, one, raw, recorded  # noqa: E402

NAME = "loadgen-rmc1-tiny"  # sub_batch 4 and 8, a search for p95 <= 3 ms


def points(sub_batch: int, percentile: str) -> tuple[list[float], list[float]]:
    rows = sorted(
        (run["qps"], run[f"latency_{percentile}_ms"])
        for run in raw(NAME)["runs"]
        if run["sub_batch"] == sub_batch
    )
    return [qps for qps, _ in rows], [ms for _, ms in rows]


def test_one_line_per_sub_batch_on_a_p95_and_a_p99_panel():
    p95_panel, p99_panel = loadgen.draw([recorded(NAME)]).axes
    assert p95_panel.get_title() == "rmc1-tiny: p95" and p99_panel.get_title() == "rmc1-tiny: p99"
    for panel, percentile in ((p95_panel, "p95"), (p99_panel, "p99")):
        assert panel.get_yscale() == "log"
        for sub_batch in (4, 8):
            qps, ms = points(sub_batch, percentile)
            line = one(panel, f"{sub_batch}/{percentile}")
            np.testing.assert_array_equal(line.get_xdata(), qps)
            np.testing.assert_allclose(line.get_ydata(), ms)
    # The search ran 100, 200, 400 (missed), then 300 qps: the line is in rate order.
    assert [run["qps"] for run in raw(NAME)["runs"][:4]] == [100, 200, 400, 300]
    np.testing.assert_array_equal(one(p95_panel, "4/p95").get_xdata(), [100, 200, 300, 400])


def test_target_line_on_its_percentile_and_each_best_rate_marked():
    data = raw(NAME)
    assert (data["settings"]["target_percentile"], data["settings"]["target_ms"]) == ("p95", 3.0)
    p95_panel, p99_panel = loadgen.draw([recorded(NAME)]).axes
    np.testing.assert_allclose(one(p95_panel, "target").get_ydata(), [3.0, 3.0])
    assert by_gid(p99_panel, "target") == []
    for panel, percentile in ((p95_panel, "p95"), (p99_panel, "p99")):
        for sub_batch in (4, 8):
            best_qps = data["searches"][str(sub_batch)]["best_qps"]
            qps, ms = points(sub_batch, percentile)
            star = one(panel, f"{sub_batch}/best")
            assert star.get_xdata()[0] == best_qps
            assert star.get_ydata()[0] == pytest.approx(ms[qps.index(best_qps)])
        np.testing.assert_array_equal(one(panel, "best").get_xdata(), [data["best"]["qps"]] * 2)
    assert data["best"] == {**data["best"], "sub_batch": 8, "qps": 800.0}


def test_unfinished_runs_are_ringed_and_runs_without_requests_left_out():
    def change(data):
        runs = {(run["sub_batch"], run["qps"]): run for run in data["runs"]}
        runs[4, 200.0]["unfinished"] = 2
        runs[4, 300.0]["latency_p95_ms"] = float("nan")  # a run without requests

    p95_panel, _ = loadgen.draw([recorded(NAME, change)]).axes
    np.testing.assert_array_equal(one(p95_panel, "4/p95").get_xdata(), [100, 200, 400])
    ring = one(p95_panel, "4/unfinished")
    np.testing.assert_array_equal(ring.get_xdata(), [200])
    assert by_gid(p95_panel, "8/unfinished") == []


def test_no_target_no_best_without_a_search():
    def change(data):
        data["settings"].update(target_percentile=None, target_ms=None)
        data.update(searches={}, best=None)

    for panel in loadgen.draw([recorded(NAME, change)]).axes:
        assert by_gid(panel, "target") == by_gid(panel, "best") == by_gid(panel, "4/best") == []
