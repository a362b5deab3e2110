import pytest

import configs


def test_every_preset_has_a_tiny_variant_with_the_same_architecture():
    for name in ("rmc1", "rmc2", "rmc3"):
        full, tiny = configs.get(name), configs.get(f"{name}-tiny")
        assert tiny.name == f"{name}-tiny"
        for field in ("dense_features", "bottom_mlp", "top_mlp", "pooling_factor", "interaction"):
            assert getattr(tiny, field) == getattr(full, field), field
        assert tiny.num_tables == full.num_tables
        assert tiny.embedding_dim == full.embedding_dim
        assert tiny.table_bytes <= full.table_bytes / 500


def test_full_presets_match_the_design_table():
    expected = {
        "rmc1": (128, (64, 32), (256, 64, 1), 8, 4_000_000, 32, 80),
        "rmc2": (256, (128, 64), (128, 64, 1), 32, 500_000, 64, 120),
        "rmc3": (2560, (1024, 256, 32), (512, 256, 1), 10, 2_000_000, 32, 20),
    }
    for name, (dense, bottom, top, count, rows, dim, pooling) in expected.items():
        config = configs.get(name)
        assert (config.dense_features, config.bottom_mlp, config.top_mlp) == (dense, bottom, top)
        assert config.num_tables == count and config.embedding_dim == dim
        assert {table.num_rows for table in config.tables} == {rows}
        assert config.pooling_factor == pooling and config.interaction == "cat"


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"'rmc9'.*rmc1.*rmc2-tiny.*rmc3"):
        configs.get("rmc9")
