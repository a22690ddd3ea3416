"""The report's "Does the heatmap land where the unit acts?" section and its plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentcam import plots
from latentcam.cli import main

ROWS = [
    {
        "layer": "b0",
        "method": "gradcam",
        "map_size": [16, 16],
        "pointing_game": 0.3,
        "chance": 0.1,
        "energy_in_part": 0.2,
        "spearman_cam_effect": 0.1,
    },
    {
        "layer": "b2",
        "method": "gradcam",
        "map_size": [4, 4],
        "pointing_game": 0.05,
        "chance": 0.1,
        "energy_in_part": 0.1,
        "spearman_cam_effect": None,
    },
    {
        "layer": "fusion",
        "method": "gradcam",
        "map_size": [32, 32],
        "pointing_game": 0.2,
        "chance": 0.1,
        "energy_in_part": 0.15,
        "spearman_cam_effect": 0.05,
    },
]


def test_layer_method_plot_draws_each_metric_against_resolution() -> None:
    fig = plots.layer_method_comparison(ROWS, paper_layer="b2")
    first = fig.axes[0]
    line = first.get_lines()[0]  # gradcam: real layers by their place in the encoder
    assert line.get_xdata().tolist() == [0, 1]
    np.testing.assert_allclose(line.get_ydata(), [0.3 - 0.1, 0.05 - 0.1])
    fused = first.get_lines()[1]  # the fusion point, right of the last layer
    assert fused.get_xdata().tolist() == [2] and fused.get_ydata()[0] == pytest.approx(0.1)
    labels = [t.get_text() for t in first.get_xticklabels()]
    assert labels == ["b0\n16x16", "b2\n4x4", "fusion"]
    assert any("paper" in t.get_text() for t in first.texts)


def test_layers_of_the_same_size_stay_apart_in_the_layer_plot() -> None:
    rows = [
        {**ROWS[0], "layer": "blocks.3", "map_size": [4, 4]},
        {**ROWS[1], "layer": "blocks.4", "map_size": [4, 4]},
    ]
    line = plots.layer_method_comparison(rows, paper_layer="blocks.4").axes[0].get_lines()[0]
    assert line.get_xdata().tolist() == [0, 1]  # no vertical segment at one x


def test_sanity_plot_covers_negative_points() -> None:
    curve = [{"layer": "head.mu", "spearman": -0.305}, {"layer": "b0", "spearman": -0.40}]
    low, high = plots.sanity_curve(curve).axes[0].get_ylim()
    assert low < -0.40 and high >= 1.0


def test_unit_part_pair_shows_both_matrices_and_the_agreement() -> None:
    fig = plots.unit_part_pair([[0.2, 0.8]], [[0.5, 0.5]], ["mouth", "skin"], [7], 0.123)
    assert "0.12" in fig._suptitle.get_text()
    images = [ax.get_images()[0].get_array() for ax in fig.axes[:2]]
    assert images[0].tolist() == [[0.2, 0.8]] and images[1].tolist() == [[0.5, 0.5]]


def test_report_has_the_localisation_section(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rep"
    argv = ["report", str(runs["vae"]), "--out", str(out), "--n", "2", "--eval-n", "16"]
    assert main([*argv, "--methods", "gradcam", "layercam"]) == 0
    html = (out / "index.html").read_text()
    assert "Does the heatmap land where the unit acts?" in html
    assert "decoder gradient" in html and "Layer x method comparison" in html
    assert "overflow-x:auto" in html and "image-rendering:pixelated; }" in html
    assert 'class="pixel"' not in html  # no chart is drawn pixelated
    assert "matrix agreement" in html
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["localisation"]["comparison"]) == 8  # 3 blocks + fusion, 2 methods
    reason = m["localisation"]["auto"]["reason"]  # up to the paper's (the quote is escaped)
    assert reason.split(";")[0] in html
