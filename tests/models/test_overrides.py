import pytest

import configs
from recjax.models.overrides import apply_overrides, overridable_fields


def test_overrides_change_fields_and_the_config_validates_them():
    config = configs.get("rmc2-tiny")
    changed = apply_overrides(
        config, ["top_mlp=512-256,1", "interaction=dot", "bottom_mlp=128,64", "dense_features=9"]
    )
    assert changed.top_mlp == (512, 256, 1) and changed.interaction == "dot"
    assert changed.dense_features == 9 and changed.tables == config.tables
    assert apply_overrides(config, []) is config
    assert {"top_mlp", "embedding_lowering", "dense_features"} <= set(overridable_fields(config))
    assert "tables" not in overridable_fields(config)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["top_mlp"], r"must read key=value; got 'top_mlp'"),
        (["tables=3"], r"'tables' is not an overridable field; overridable: \[.*'top_mlp'"),
        (["dense_features=many"], r"dense_features='many'; dense_features takes an integer"),
        (["top_mlp=8,x"], r"top_mlp takes integers separated by commas"),
        (["top_mlp=8,2"], r"end in one unit"),
        (["interaction=dot", "bottom_mlp=128,32"], r"\(32\) to equal the embedding dim \(64\)"),
    ],
)
def test_bad_overrides_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(configs.get("rmc2-tiny"), overrides)
