"""The embedding figure: GB/s against batch size per implementation, beside the gather ceiling."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from recjax.reporting.figures import embedding  # noqa: E402
from tests.reporting.figures.recorded import one, raw, recorded  # noqa: E402

NAME = "embedding-rmc1-tiny"


def test_bandwidth_per_implementation_and_the_ceiling():
    data = raw(NAME)
    (panel,) = embedding.draw([recorded(NAME)]).axes
    assert panel.get_title() == "rmc1-tiny"
    assert panel.get_xscale() == "log" and panel.get_yscale() == "log"
    implementations = list(dict.fromkeys(row["implementation"] for row in data["results"]))
    assert implementations == ["gather_sum", "native", "pooling_loop", "segment_sum", "torch"]
    for name in implementations:
        rows = sorted(
            (r["batch_size"], r["gigabytes_per_s"])
            for r in data["results"]
            if r["implementation"] == name
        )
        line = one(panel, name)
        np.testing.assert_array_equal(line.get_xdata(), [b for b, _ in rows])
        # GB/s is the bytes gathered per call over the p50: the figure plots the recorded number.
        np.testing.assert_allclose(line.get_ydata(), [g for _, g in rows])
    row = data["results"][0]
    assert row["gigabytes_per_s"] == pytest.approx(
        row["gathered_bytes_per_call"] / row["p50_ms"] / 1e6
    )
    np.testing.assert_allclose(one(panel, "ceiling").get_ydata(), [data["ceiling"]["median"]] * 2)
