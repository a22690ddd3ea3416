"""benchmarks/localisation.py: the verdict on hand-made rows, and a --quick run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scripts import load_script  # tests/benchmarks/bench_scripts.py

bench = load_script("localisation", "localisation_bench")


def _row(layer: str, method: str, pg: float, chance: float, energy: float, rho: float) -> dict:
    return bench._with_lift(
        {
            "layer": layer,
            "method": method,
            "pointing_game": pg,
            "chance": chance,
            "energy_in_part": energy,
            "spearman_cam_effect": rho,
        }
    )


def _result(variant: str, psnr: float, rows: list[dict]) -> dict:
    return {"variant": variant, "psnr": psnr, "paper_layer": "L3", "rows": rows}


def test_verdict_needs_every_metric_and_psnr_within_one_db() -> None:
    paper = _result("paper", 20.0, [_row("L3", "gradcam", 0.10, 0.10, 0.10, 0.05)])
    better = _row("L2", "layercam", 0.30, 0.12, 0.20, 0.50)
    results = [
        paper,
        _result("good", 19.2, [better]),  # better everywhere, 0.8 dB lower: wins
        _result("blurry", 18.9, [better]),  # 1.1 dB lower: excluded
        # higher pointing but not above chance by more: excluded
        _result("lucky", 20.5, [_row("L2", "gradcam", 0.30, 0.35, 0.20, 0.50)]),
        _result("flat", 20.5, [_row("L2", "gradcam", 0.30, 0.12, 0.10, 0.50)]),  # energy tie
    ]
    v = bench.verdict(results)
    assert v["paper_recipe"]["pointing_game"] == 0.10
    assert [(w["variant"], w["layer"]) for w in v["beats_on_all"]] == [("good", "L2")]
    gains = [0.30 - 0.10, 0.20 - 0.10, 0.50 - 0.05, (0.30 - 0.12) - 0.0]
    assert v["beats_on_all"][0]["mean_gain"] == pytest.approx(sum(gains) / 4)


def test_factor_summary_skips_maps_without_energy() -> None:
    factors = [
        {
            "per_layer": {
                "L3": {
                    "pointing_game": 1.0,
                    "chance": 0.2,
                    "energy_in_part": 0.5,
                    "lands_on_part": True,
                }
            }
        },
        {
            "per_layer": {
                "L3": {
                    "pointing_game": 0.0,
                    "chance": 0.4,
                    "energy_in_part": float("nan"),
                    "lands_on_part": False,
                }
            }
        },
        {"factor": "background"},  # no known part: not scored
    ]
    s = bench._factor_summary(factors)["L3 / gradcam"]
    assert s == {
        "pointing_game": 0.5,
        "chance": pytest.approx(0.3),
        "energy_in_part": 0.5,
        "lands_on_part": 0.5,
        "factors": 2,
    }


def test_quick_run_writes_tables_plot_and_json(
    tmp_path: Path, _session_cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("LATENTCAM_CACHE", str(_session_cache))
    out = tmp_path / "loc.md"
    code = bench.main(
        ["--quick", "--variants", "spatial", "--work", str(tmp_path / "runs"), "--out", str(out)]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    names = [r["variant"] for r in summary["results"]]
    assert names == ["paper", "spatial"]
    layers = {row["layer"] for r in summary["results"] for row in r["rows"]}
    assert layers == {"encoder.blocks.0", "encoder.blocks.1", "encoder.blocks.2", "fusion"}
    methods = {row["method"] for row in summary["results"][0]["rows"]}
    assert methods == {"gradcam", "layercam", "hirescam"}
    text = out.read_text()
    assert "| paper | encoder.blocks.2 (paper) | 4x4 | gradcam |" in text
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
