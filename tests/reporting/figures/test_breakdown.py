"""The breakdown figure: stacked bars of each stage's share per batch size, presets side by side."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from recjax.reporting.figures import breakdown  # noqa: E402
from recjax.reporting.figures.results import ResultsError  # noqa: E402
from tests.reporting.figures.recorded import raw, recorded  # noqa: E402

NAMES = ("breakdown-rmc1-tiny", "breakdown-rmc2-tiny", "breakdown-rmc3-tiny")
STAGES = ["embedding", "bottom_mlp", "interaction", "top_mlp"]


def test_stacked_shares_of_the_stage_sum_per_batch_size_presets_side_by_side():
    figure = breakdown.draw([recorded(name) for name in NAMES])
    panels = figure.axes
    assert [panel.get_title() for panel in panels] == ["rmc1-tiny", "rmc2-tiny", "rmc3-tiny"]
    for panel, name in zip(panels, NAMES, strict=True):
        rows = raw(name)["results"]
        assert panel.get_ylim() == (0, 100)
        containers = {container.get_label(): container for container in panel.containers}
        assert list(containers) == STAGES  # the model's stage order, bottom to top
        bottoms = np.zeros(len(rows))
        for stage in STAGES:
            bars = containers[stage]
            heights = [100 * row["stage_ms"][stage] / sum(row["stage_ms"].values()) for row in rows]
            np.testing.assert_allclose([bar.get_height() for bar in bars], heights)
            np.testing.assert_allclose([bar.get_y() for bar in bars], bottoms)
            bottoms += heights
        np.testing.assert_allclose(bottoms, 100)  # every bar sums to 100 %
        labels = [label.get_text() for label in panel.get_xticklabels()]
        assert [label.split("\n")[0] for label in labels] == ["1", "4", "16"]
        assert labels[0].split("\n")[1] == f"{rows[0]['end_to_end_ms']:.3g} ms"
    # A stage keeps its color in every panel; the figure has one legend naming each stage once.
    colors = {tuple(panel.containers[0][0].get_facecolor()) for panel in panels}
    assert len(colors) == 1
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == STAGES


def test_the_fc_stages_share_matches_the_runs_own_fc_share():
    """The bars of the "fc" stages add up to the run's own fc_share_of_stages."""
    (panel,) = breakdown.draw([recorded("breakdown-rmc3-tiny")]).axes
    containers = {container.get_label(): container for container in panel.containers}
    for index, row in enumerate(raw("breakdown-rmc3-tiny")["results"]):
        fc = sum(containers[s][index].get_height() for s in ("bottom_mlp", "top_mlp"))
        assert fc == pytest.approx(100 * row["fc_share_of_stages"])


def test_a_stage_time_missing_is_named_with_its_file():
    run = recorded(
        "breakdown-rmc2-tiny", lambda data: data["results"][2]["stage_ms"].pop("top_mlp")
    )
    with pytest.raises(ResultsError, match=r"'results\[2\]\.stage_ms\.top_mlp'") as error:
        breakdown.draw([run])
    assert run.path in str(error.value)
