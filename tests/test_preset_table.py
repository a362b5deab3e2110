"""The README's presets-table rows, computed from the presets' own costs."""

from configs import table


def test_rows_hold_the_costs_of_the_presets():
    assert table.row("deepfm") == (
        "| deepfm | deepfm | FM + deep 624-400-400-400-1 over 39 fields x 16 dim (13 dense as "
        "fields), 26 tables x 3 to 10,131,227 rows, 1 id/feature, first-order weights | "
        "26 x 3 to 10,131,227 x 16 + 26 x 3 to 10,131,227 x 1 | 1 | 2.3 GB | 1.14 M | 1.77 KB |"
    )
    cells = [cell.strip() for cell in table.row("dcnv2-full").split("|")[1:-1]]
    assert cells[0:2] == ["dcnv2-full", "dcnv2"]
    assert cells[3:] == [
        "26 x 3 to 40,000,000 x 128",
        "1 to 100 (214 in all)",
        "105 GB",
        "32.09 M",
        "110 KB",
    ]
    assert table.row("rmc2").endswith("| 32 x 500,000 x 64 | 120 | 4.1 GB | 0.64 M | 983 KB |")
