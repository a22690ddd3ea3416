"""evaluate's layer x method comparison, ``auto`` choice and decoder section; the CLIs that
take several layers (explain, evaluate) on the tiny runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentcam.cli import main
from latentcam.evaluate import evaluate, jsonable
from latentcam.explain import metrics as M
from latentcam.explain.cam import latent_cams, upsample
from latentcam.explain.traversal import effect_maps
from latentcam.runs import open_run_data

ROW_KEYS = {
    "layer",
    "method",
    "map_size",
    "energy_in_part",
    "pointing_game",
    "chance",
    "spearman_cam_effect",
    "top10_iou_cam_effect",
    "spearman_cam_decoder",
    "dead_fraction",
}
BLOCKS = ["encoder.blocks.0", "encoder.blocks.1", "encoder.blocks.2"]


def _pearson_oracle(dec: dict, centre: bool = False) -> float | None:
    """Pearson correlation of the two unit x part matrices, with NumPy (None when undefined)."""
    present = np.array(dec["area"]) > 0
    enc = np.array(dec["unit_part_encoder"], dtype=float)[:, present]
    deco = np.array(dec["unit_part_decoder"], dtype=float)[:, present]
    keep = ~(np.isnan(enc) | np.isnan(deco)).any(1)
    enc, deco = enc[keep], deco[keep]
    if centre:
        enc, deco = enc - enc.mean(0), deco - deco.mean(0)
    if enc.size < 2:
        return None
    return pytest.approx(float(np.corrcoef(enc.ravel(), deco.ravel())[0, 1]), abs=1e-6)


@pytest.fixture(scope="module")
def vae_metrics(runs: dict[str, Path]) -> tuple[dict, object]:
    batch = open_run_data(runs["vae"], n=20, split="all", progress=False)
    m = evaluate(
        batch,
        layers=["all", "fusion", "auto"],
        methods=["gradcam", "layercam"],
        max_map_images=12,
        sanity=False,
        progress=False,
    )
    return jsonable(m), batch


def test_comparison_rows_cover_every_layer_and_method(vae_metrics: tuple) -> None:
    m, _ = vae_metrics
    loc = m["localisation"]
    rows = loc["comparison"]
    assert [(r["layer"], r["method"]) for r in rows] == [
        (layer, method) for layer in [*BLOCKS, "fusion"] for method in ("gradcam", "layercam")
    ]
    assert all(set(r) == ROW_KEYS for r in rows)
    sizes = {r["layer"]: r["map_size"] for r in rows}
    assert sizes == {
        "encoder.blocks.0": [16, 16],
        "encoder.blocks.1": [8, 8],
        "encoder.blocks.2": [4, 4],
        "fusion": [32, 32],
    }
    assert loc["paper_layer"] == "encoder.blocks.2" == loc["default_layer"]
    # the per-layer section (method gradcam) carries the same means over active units
    for layer in BLOCKS:
        row = next(r for r in rows if r["layer"] == layer and r["method"] == "gradcam")
        means = loc["layers"][layer]["mean_over_active"]
        for key, value in means.items():
            assert value == row[key] or (value is None and row[key] is None)
    for r in rows:
        for key in ("energy_in_part", "pointing_game", "chance", "top10_iou_cam_effect"):
            assert r[key] is None or 0.0 <= r[key] <= 1.0
        for key in ("spearman_cam_effect", "spearman_cam_decoder"):
            assert r[key] is None or -1.0 <= r[key] <= 1.0


def test_comparison_row_equals_an_independent_computation(vae_metrics: tuple) -> None:
    m, batch = vae_metrics
    model = batch.run.model
    x = batch.images[:12]
    units = m["units"]["active_units"] or list(range(model.latent_dim))
    with torch.no_grad():
        mu, _ = model.encode(x)
    effects = effect_maps(model, mu, units=units)
    cams = upsample(latent_cams(model, x, units=units, layer="encoder.blocks.1").maps, 32)
    rho = M.rank_correlation(cams, effects).nanmean(0)
    expected = float(rho[~rho.isnan()].mean())
    row = next(
        r
        for r in m["localisation"]["comparison"]
        if r["layer"] == "encoder.blocks.1" and r["method"] == "gradcam"
    )
    assert row["spearman_cam_effect"] == pytest.approx(expected, abs=1e-5)


def test_auto_choice_is_the_best_mean_rank(vae_metrics: tuple) -> None:
    m, _ = vae_metrics
    auto = m["localisation"]["auto"]
    assert auto["layer"] in [*BLOCKS, "fusion"] and auto["method"] in ("gradcam", "layercam")
    ranks = {name: s["mean_rank"] for name, s in auto["scores"].items()}
    assert len(ranks) == 8 and ranks[f"{auto['layer']}/{auto['method']}"] == min(ranks.values())
    assert "pointing" in auto["reason"] and "paper's" in auto["reason"]
    assert auto["layer"] in m["localisation"]["layers"]


def test_decoder_section(vae_metrics: tuple) -> None:
    m, _ = vae_metrics
    dec = m["decoder"]
    units = dec["units"]
    assert units == (m["units"]["active_units"] or list(range(8)))
    assert dec["exact"] is True and dec["encoder_layer"] == "encoder.blocks.2"
    R = len(dec["regions"])
    for key in ("unit_part_decoder", "unit_part_encoder"):
        share = np.array(dec[key], dtype=float)
        assert share.shape == (len(units), R)
        live = ~np.isnan(share).any(1)
        np.testing.assert_allclose(share[live].sum(1), 1.0, atol=1e-4)
    assert dec["matrix_agreement"] == _pearson_oracle(dec)
    assert dec["matrix_agreement_centred"] == _pearson_oracle(dec, centre=True)
    # the same Spearman as the comparison row of the paper's layer and method
    row = next(
        r
        for r in m["localisation"]["comparison"]
        if r["layer"] == "encoder.blocks.2" and r["method"] == "gradcam"
    )
    assert dec["spearman_cam_decoder_mean"] == pytest.approx(row["spearman_cam_decoder"])
    assert set(dec["units_per_part"]) <= set(dec["regions"])
    assert all(set(v) <= set(units) and len(v) <= 5 for v in dec["units_per_part"].values())


def test_factor_scores_per_layer(vae_metrics: tuple) -> None:
    m, _ = vae_metrics
    scored = [f for f in m["disentanglement"]["factors"] if "per_layer" in f]
    assert scored
    for f in scored:
        assert set(f["per_layer"]) == {*BLOCKS, "fusion"} | set(m["localisation"]["layers"])
        paper = f["per_layer"]["encoder.blocks.2"]
        assert {k: f[k] for k in paper} == paper


def test_segvae_decoder_maps_are_exact(runs: dict[str, Path]) -> None:
    batch = open_run_data(runs["segvae"], n=8, split="all", progress=False)
    m = evaluate(batch, max_map_images=4, sanity=False, progress=False)
    assert [r["layer"] for r in m["localisation"]["comparison"]] == ["encoder.blocks.2"]
    assert "auto" not in m["localisation"] and m["decoder"]["exact"] is True
    dec = jsonable(m["decoder"])
    assert dec["matrix_agreement"] == _pearson_oracle(dec)
    assert dec["matrix_agreement_centred"] == _pearson_oracle(dec, centre=True)


def test_explain_cli_several_layers_and_auto(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "explain"
    argv = ["explain", str(runs["vae"]), "--out", str(out), "--n", "4", "--top", "2"]
    assert main([*argv, "--layer", "encoder.blocks.0", "fusion"]) == 0
    saved = np.load(out / "maps.npz")
    assert list(saved["layers"]) == ["encoder.blocks.0", "fusion"]
    assert str(saved["layer"]) == "encoder.blocks.0"
    np.testing.assert_array_equal(saved["maps"], saved["maps__encoder.blocks.0"])
    assert saved["maps"].shape == (4, 8, 16, 16)
    fused = saved["maps__fusion"]
    assert fused.shape == (4, 8, 32, 32) and fused.min() >= 0.0 and fused.max() <= 1.0
    assert (out / "grid.png").is_file() and (out / "grid__fusion.png").is_file()

    auto = tmp_path / "auto"
    argv = ["explain", str(runs["vae"]), "--out", str(auto), "--n", "4", "--top", "1"]
    assert main([*argv, "--layer", "auto"]) == 0
    choice = json.loads((auto / "layer_choice.json").read_text())
    assert choice["layer"] in [*BLOCKS, "fusion"] and choice["reason"]
    assert str(np.load(auto / "maps.npz")["layer"]) == choice["layer"]
    assert "layer auto:" in capsys.readouterr().out

    bad = main([*argv, "--layer", "encoder.blocks.0", "encoder.block.2"])
    err = capsys.readouterr().err
    assert bad == 2 and "Did you mean: encoder.blocks.2" in err


def test_evaluate_cli_layers_and_methods(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.json"
    argv = ["evaluate", str(runs["vae"]), "--out", str(out), "--n", "8", "--no-sanity"]
    argv += ["--max-map-images", "4", "--layer", "encoder.blocks.0", "encoder.blocks.2"]
    assert main([*argv, "--methods", "gradcam", "hirescam"]) == 0
    m = json.loads(out.read_text())
    pairs = [(r["layer"], r["method"]) for r in m["localisation"]["comparison"]]
    assert pairs == [
        ("encoder.blocks.0", "gradcam"),
        ("encoder.blocks.0", "hirescam"),
        ("encoder.blocks.2", "gradcam"),
        ("encoder.blocks.2", "hirescam"),
    ]
    assert list(m["localisation"]["layers"]) == ["encoder.blocks.0", "encoder.blocks.2"]
    printed = capsys.readouterr().out
    assert "encoder.blocks.0   hirescam" in printed


def test_factor_scores_per_method_match_maps_recomputed(vae_metrics: tuple) -> None:
    from latentcam.data.classes import REGIONS
    from latentcam.explain import metrics as M
    from latentcam.explain.cam import latent_cams, upsample

    m, batch = vae_metrics
    scored = [f for f in m["disentanglement"]["factors"] if "per_method" in f]
    assert scored
    f = scored[0]
    assert set(f["per_method"]) == {"gradcam", "layercam"}
    assert f["per_method"]["gradcam"] == f["per_layer"]
    model, x = batch.run.model, batch.images[:12]
    maps = upsample(
        latent_cams(model, x, units=[f["unit"]], layer="encoder.blocks.0", method="layercam").maps,
        x.shape[-1],
    )
    ids = tuple(i for r in f["regions"] for i in REGIONS[r])
    sc = M.region_scores(maps, batch.parts[:12], "target", {"target": ids})
    got = f["per_method"]["layercam"]["encoder.blocks.0"]
    assert got["pointing_game"] == pytest.approx(float(sc.hits.float().mean()))
    assert got["energy_in_part"] == pytest.approx(float(sc.energy.nanmean()), abs=1e-6)


def test_every_comparison_row_equals_one_pass_per_layer_and_method(vae_metrics: tuple) -> None:
    """The reference of the shared gradient pass: each (layer, method) row's scores from maps
    computed the straightforward way, one engine call per layer and method (fusion: one per
    fused layer), scored by localisation_scores against effect and decoder maps made anew."""
    from latentcam.explain.decoder import decoder_maps
    from latentcam.explain.layers import fused_cams, localisation_scores

    m, batch = vae_metrics
    model, x, parts = batch.run.model, batch.images[:12], batch.parts[:12]
    units = m["units"]["active_units"] or list(range(model.latent_dim))
    with torch.no_grad():
        mu, _ = model.encode(x)
    effects = effect_maps(model, mu, units=units)
    decoder = decoder_maps(model, mu, units=units)
    regions = [m["unit_part_effect"]["best_region"][u] for u in units]
    rows = m["localisation"]["comparison"]
    assert len(rows) == 8
    for row in rows:
        layer, method = row["layer"], row["method"]
        if layer == "fusion":
            cams = fused_cams(model, x, units=units, method=method)
        else:
            cams = upsample(latent_cams(model, x, units=units, layer=layer, method=method).maps, 32)
        scores = localisation_scores(cams, effects, parts, regions, decoder)
        for key, values in scores.items():
            expected = float(values[~values.isnan()].mean()) if (~values.isnan()).any() else None
            got = row[key]
            assert (got is None and expected is None) or got == pytest.approx(expected, abs=1e-6), (
                layer,
                method,
                key,
            )
