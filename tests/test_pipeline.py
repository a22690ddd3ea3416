"""Run-level commands end to end on tiny trained runs: evaluate, traverse, report, sweep."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from latentcam.cli import main
from latentcam.config import RunConfig, load_config, model_config
from latentcam.errors import InputError
from latentcam.evaluate import evaluate
from latentcam.explain.metrics import seg_iou
from latentcam.models.registry import capabilities_of
from latentcam.runs import open_run_data, parse_floats, parse_units
from latentcam.sweep import SweepPoint, parse_grid, recommend, run_sweep


def tiny(cache: Path, *overrides: str) -> RunConfig:
    return load_config(["tiny"], [f"data.cache_dir={cache}", "data.synth_n=96", *overrides])


@pytest.mark.parametrize("name", ["vae", "cvae", "segvae"])
def test_evaluate_sections_and_values(name: str, runs: dict[str, Path]) -> None:
    batch = open_run_data(runs[name], n=16, split="all", progress=False)
    m = evaluate(batch, layers="all", progress=False)
    K = batch.run.config.model.latent_dim
    kl = np.array(m["units"]["kl"])
    assert kl.shape == (K,) and (kl >= 0).all()
    assert m["units"]["active"] == int((kl > 0.01).sum())
    assert sorted(m["ranking"]["by_kl"]) == list(range(K))
    assert m["ranking"]["by_kl"][0] == int(kl.argmax())
    share = np.array(m["unit_part_effect"]["share"])
    live = share.sum(1) > 0
    np.testing.assert_allclose(share[live].sum(1), 1.0, atol=1e-4)
    layers = m["localisation"]["layers"]
    assert list(layers) == batch.run.model.encoder_layers()
    for entry in layers.values():
        for row in entry["per_unit"]:
            rho = row["spearman_cam_effect"]
            assert np.isnan(rho) or -1.0 <= rho <= 1.0  # NaN: the unit's map is zero everywhere
    assert {s["layer"] for s in m["sanity"]["curve"]}
    assert "mig" in m["disentanglement"] and 0.0 <= m["disentanglement"]["mig"] <= 1.0
    if name == "segvae":
        seg = m["segmentation"]
        with torch.no_grad():
            pred = batch.run.model(batch.images).seg_logits.argmax(1)
        expected = seg_iou(pred, batch.parts, 19)
        assert seg["miou"] == pytest.approx(expected.miou, abs=1e-6)
        fg_pred, fg_true = pred >= 2, batch.parts >= 2
        pooled = (fg_pred & fg_true).sum() / (fg_pred | fg_true).sum()
        assert seg["iou_binary"] == pytest.approx(float(pooled), abs=1e-6)
    if name == "cvae":
        ctrl = m["attribute_control"]
        assert "per_attribute" in ctrl or "note" in ctrl


def test_evaluate_cli_writes_json_and_rejects_bad_layer(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "m.json"
    assert main(["evaluate", str(runs["vae"]), "--out", str(out), "--n", "12", "--no-sanity"]) == 0
    m = json.loads(out.read_text())
    assert m["latent_dim"] == 8 and "localisation" in m
    bad = tmp_path / "bad.json"
    assert (
        main(["evaluate", str(runs["vae"]), "--out", str(bad), "--layer", "encoder.blocks.9"]) == 2
    )
    assert not bad.exists()


def test_traverse_cli_outputs(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "trav"
    assert (
        main(
            [
                "traverse",
                str(runs["cvae"]),
                "--out",
                str(out),
                "--units",
                "0,2",
                "--n",
                "2",
                "--deltas",
                "0.1,0.5",
            ]
        )
        == 0
    )
    arrays = np.load(out / "additive" / "traversal.npz")
    assert arrays["images"].shape == (2, 2, 2, 3, 32, 32)
    np.testing.assert_allclose(arrays["steps"], [0.1, 0.5])
    assert (out / "additive" / "unit_000.png").is_file() and (
        out / "additive" / "unit_002.gif"
    ).is_file()
    assert np.load(out / "sigma" / "traversal.npz")["steps"].tolist() == [-3, -2, -1, 0, 1, 2, 3]
    assert len(list((out / "attributes").glob("*.gif"))) == 3  # a CVAE also traverses attributes
    assert main(["traverse", str(runs["vae"]), "--out", str(out), "--units", "0,8"]) == 2


@pytest.mark.parametrize("name", ["vae", "segvae"])
def test_report_is_offline_and_complete(name: str, runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rep"
    assert main(["report", str(runs[name]), "--out", str(out), "--n", "3", "--eval-n", "12"]) == 0
    html = (out / "index.html").read_text()
    assert not re.search(r"(src|href)=\"https?:", html)  # nothing from the network
    assert html.count("data:image/png;base64,") >= 4
    assert "Sanity check" in html and "Which units matter" in html
    if name == "segvae":
        assert "Seg-Grad-CAM (Fig. 7)" in html
    else:
        assert "Fig. 9" in html and "Latent traversals (Fig. 10)" in html
    assert json.loads((out / "metrics.json").read_text())["model"] == name


def test_sweep_resumes_and_recommends(_session_cache: Path, tmp_path: Path) -> None:
    base = tiny(_session_cache, "train.max_steps=4")
    grid = parse_grid(["latent=4,8"])
    out = tmp_path / "sweep"
    rows = run_sweep(base, grid, out, eval_n=8, progress=False)
    assert [r["latent"] for r in rows] == [4, 8]
    assert (out / "summary.csv").read_text().count("\n") == 3
    assert "How many latent units" in (out / "summary.md").read_text()
    assert (out / "sheet.png").is_file() and (out / "plot_psnr.png").is_file()
    point = out / SweepPoint(32, 4, 3).name
    ckpt = point / "checkpoints" / "last.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    run_sweep(base, grid, out, eval_n=8, progress=False)  # finished points are skipped
    assert ckpt.stat().st_mtime_ns == stamp
    # an interrupted point (checkpoints, no final metrics) resumes from its last checkpoint
    (point / "metrics.json").unlink()
    (point / "evaluation.json").unlink()
    more = tiny(_session_cache, "train.max_steps=6")
    run_sweep(more, grid, out, eval_n=8, progress=False)
    metrics = json.loads((point / "metrics.json").read_text())
    assert metrics["start_step"] == 4 and metrics["global_step"] == 6


def test_recommend_smallest_latent_within_tolerance() -> None:
    rows = [
        {
            "point": "a",
            "latent": 5,
            "psnr": 20.0,
            "params": 1,
            "energy_in_part": 0.2,
            "pointing_game": 0.1,
        },
        {
            "point": "b",
            "latent": 15,
            "psnr": 22.6,
            "params": 2,
            "energy_in_part": 0.5,
            "pointing_game": 0.4,
        },
        {
            "point": "c",
            "latent": 50,
            "psnr": 23.0,
            "params": 3,
            "energy_in_part": 0.3,
            "pointing_game": 0.3,
        },
        {
            "point": "d",
            "latent": 100,
            "psnr": 23.5,
            "params": 4,
            "energy_in_part": 0.1,
            "pointing_game": 0.1,
        },
    ]
    rec = recommend(rows, capabilities_of(model_config(kind="vae")))
    assert rec["smallest_latent"] == 15 and rec["best_localisation_point"] == "b"
    seg = recommend(
        [{**r, "iou": v} for r, v in zip(rows, (0.80, 0.84, 0.855, 0.86), strict=True)],
        capabilities_of(model_config(kind="segvae")),
    )
    assert seg["smallest_latent"] == 50


def test_parsers_reject_bad_input() -> None:
    assert parse_units("0,2-4", 8) == [0, 2, 3, 4]
    with pytest.raises(InputError, match="out of range"):
        parse_units("9", 8)
    with pytest.raises(InputError, match="not a unit"):
        parse_units("a", 8)
    assert parse_floats("0.1,0.5", "--deltas") == [0.1, 0.5]
    with pytest.raises(InputError):
        parse_floats("0.1,x", "--deltas")
    with pytest.raises(InputError, match="axis"):
        parse_grid(["depth=3"])
