"""``describe``: what ``latentcam data info`` reports, checked against hand counts and oracles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentcam.data.classes import ATTRIBUTE_NAMES, PART_NAMES
from latentcam.data.info import describe, format_info


def test_describe_synthetic_faces(synth_dir: Path) -> None:
    synthetic = pytest.importorskip("latentcam.data.synthetic")
    info = describe(synth_dir, 64, progress=False)  # the session cache, shared with the CLI test
    assert json.loads(json.dumps(info)) == info  # JSON-ready
    assert info["layout"] == "celebamask_hq" and info["num_images"] == 200
    assert info["image_size"] == [64, 64] and info["image_sizes"] == {"64x64": 200}
    assert info["num_classes"] == 19 and info["class_names"] == list(PART_NAMES)
    assert info["attributes"] == list(ATTRIBUTE_NAMES)
    assert info["factors"] == list(synthetic.FACTOR_NAMES)
    assert (
        info["splits"] == {"train": 160, "val": 20, "test": 20} and info["split_source"] == "seeded"
    )
    truth = synthetic.render_faces(200, 64, 0)  # the oracle: what the renderer drew
    pixels = np.bincount(truth.parts.ravel(), minlength=19) / truth.parts.size
    np.testing.assert_allclose(list(info["class_frequencies"].values()), pixels, atol=1e-6)
    rates = (truth.attrs > 0).mean(axis=0)
    np.testing.assert_allclose(list(info["attribute_rates"].values()), rates, atol=1e-4)
    first = synthetic.FACTOR_NAMES[0]
    assert info["factor_stats"][first]["mean"] == pytest.approx(
        truth.factors[:, 0].mean(), abs=1e-4
    )


def test_class_frequencies_by_hand(make_data: Any, cache_dir: Path) -> None:
    # the toy face at 20x20: hair rows 0-4 (100 px), skin rows 4-14 x cols 5-14 minus the
    # hair row and the 4x4 nose (84 px), nose 16 px, cloth rows 18-19 (40 px), the rest 160
    written = make_data.celebamask_hq(n=2, size=(20, 20))
    info = describe(written.root, 20, cache_dir=cache_dir, progress=False)
    freqs = info["class_frequencies"]
    assert freqs["background"] == 0.4 and freqs["skin"] == 0.21 and freqs["nose"] == 0.04
    assert freqs["hair"] == 0.25 and freqs["cloth"] == 0.1
    assert (
        sum(v for k, v in freqs.items() if k not in ("background", "skin", "nose", "hair", "cloth"))
        == 0
    )
    expected = (written.attrs > 0).mean(axis=0)
    assert list(info["attribute_rates"].values()) == pytest.approx(expected.tolist())
    table = format_info(info)
    assert "layout      celebamask_hq" in table
    assert "   1 skin          21.00%" in table
    assert "splits      train 2, val 0, test 0  (seeded)" in table


def test_describe_folder_without_labels(make_data: Any, cache_dir: Path) -> None:
    written = make_data.folder(sizes=[(24, 32), (24, 32), (20, 20)])
    info = describe(written.root, 16, cache_dir=cache_dir, progress=False)
    assert info["layout"] == "folder" and info["num_images"] == 3
    assert info["image_size"] == [24, 32] and info["image_sizes"] == {"24x32": 2, "20x20": 1}
    assert (
        info["num_classes"] == 0 and info["class_names"] == [] and info["class_frequencies"] == {}
    )
    assert info["attributes"] == [] and info["factors"] == []
    assert sum(info["splits"].values()) == 3
    assert "classes     none (no masks)" in format_info(info)
