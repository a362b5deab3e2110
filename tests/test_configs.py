import dataclasses

import pytest

import configs
from recjax.models.registry import family_of


def test_every_preset_has_a_tiny_variant_with_the_same_architecture():
    full_names = [name for name in configs.names() if not name.endswith("-tiny")]
    assert {"rmc1", "rmc2", "rmc3"} <= set(full_names)
    for name in full_names:
        full, tiny = configs.get(name), configs.get(f"{name}-tiny")
        assert tiny.name == f"{name}-tiny"
        assert family_of(tiny) == family_of(full)
        changed = [
            field.name
            for field in dataclasses.fields(full)
            if getattr(full, field.name) != getattr(tiny, field.name)
        ]
        assert set(changed) <= {"name", "tables"}
        assert [t.dim for t in tiny.tables] == [t.dim for t in full.tables]
        pairs = zip(tiny.tables, full.tables, strict=True)
        assert all(t.num_rows == min(1000, f.num_rows) for t, f in pairs)
        assert tiny.table_bytes <= full.table_bytes


def test_full_presets_match_the_design_table():
    expected = {
        "rmc1": (128, (64, 32), (256, 64, 1), 8, 4_000_000, 32, 80),
        "rmc2": (256, (128, 64), (128, 64, 1), 32, 500_000, 64, 120),
        "rmc3": (2560, (1024, 256, 32), (512, 256, 1), 10, 2_000_000, 32, 20),
    }
    for name, (dense, bottom, top, count, rows, dim, pooling) in expected.items():
        config = configs.get(name)
        assert (config.dense_features, config.bottom_mlp, config.top_mlp) == (dense, bottom, top)
        assert len(config.tables) == len(config.features) == count
        assert {table.num_rows for table in config.tables} == {rows}
        assert {table.dim for table in config.tables} == {dim}
        assert {feature.capacity for feature in config.features} == {pooling}
        assert config.interaction == "cat"


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"'rmc9'.*rmc1.*rmc2-tiny.*rmc3"):
        configs.get("rmc9")
    with pytest.raises(ValueError, match=r"'rmc9-tiny'"):
        configs.get("rmc9-tiny")
