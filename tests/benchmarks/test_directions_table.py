"""benchmarks/directions_table.py: its rows and ratios from a directions section."""

from __future__ import annotations

from tests.benchmarks.bench_scripts import load_script

table = load_script("directions_table")


def _scores(pointing: float, energy: float) -> dict:
    return {
        "pointing_game": pointing,
        "energy_in_part": energy,
        "chance": 0.01,
        "cell_chance": 0.02,
        "random_pointing": 0.05,
    }


def test_markdown_rows_order_and_ratio() -> None:
    section = {
        "attributes": {
            "Young": {"auroc": 0.7, "parts": []},  # no part: not a row
            "Big_Nose": {
                "auroc": 0.6,
                "faces": 10,
                "best_unit": {"auroc": 0.55},
                "best": {"layer": "encoder.blocks.1", "method": "hirescam", **_scores(0.1, 0.2)},
                "unit": {**_scores(0.05, 0.1), "own_best": {"pointing_game": 0.07}},
            },
            "Smiling": {
                "auroc": 0.9,
                "faces": 12,
                "best_unit": {"auroc": 0.6},
                "best": {"layer": "encoder.blocks.0", "method": "layercam", **_scores(0.5, 0.3)},
                "unit": {**_scores(0.1, 0.1), "own_best": {"pointing_game": 0.2}},
            },
        },
        "factors": {
            "smile": {
                "r2": 0.4,
                "faces": 12,
                "best_unit": {"corr": 0.3},
                "best": {"layer": "encoder.blocks.0", "method": "gradcam", **_scores(0.2, 0.1)},
                "unit": {**_scores(0.1, 0.1), "own_best": {"pointing_game": 0.1}},
            }
        },
    }
    labels = [label for label, _ in table.rows(section)]
    assert labels == ["Smiling", "Big_Nose", "factor smile"]  # headline first
    lines = table.markdown(section)
    assert len(lines) == 2 + 3
    smiling = lines[2].split("|")
    assert smiling[5].strip() == "0.500" and smiling[6].strip() == "0.050"  # strongest baseline
    assert smiling[7].strip() == "10.0x"
