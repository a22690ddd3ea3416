"""Directions of a trained run end to end: ``latentcam directions``, ``explain`` / ``traverse``
/ ``evaluate`` with ``--directions``, the metrics keys, the official layouts, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentcam.cli import main
from latentcam.concepts import evaluation_directions, find_directions
from latentcam.data.classes import ATTRIBUTE_NAMES
from latentcam.evaluate import evaluate, jsonable
from latentcam.explain import metrics as M
from latentcam.explain.cam import compute_cams, upsample
from latentcam.explain.directions import DirectionSet, part_ids
from latentcam.runs import open_run_data

SCORES = {
    "energy_in_part",
    "pointing_game",
    "chance",
    "cell_chance",
    "random_pointing",
    "random_energy",
    "effect_pointing",
    "spearman_cam_effect",
}


@pytest.fixture(scope="module")
def saved(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``latentcam directions RUN --kind all`` on the tiny VAE: the directions.npz."""
    out = tmp_path_factory.mktemp("directions")
    argv = ["directions", str(runs["vae"]), "--out", str(out), "--kind", "all", "--k", "2"]
    assert main(argv) == 0
    return out / "directions.npz"


def test_directions_cli_writes_every_finder(saved: Path, capsys: pytest.CaptureFixture) -> None:
    found = DirectionSet.load(saved)
    kinds = {d.kind for d in found}
    assert {"attribute", "factor", "pca", "sefa", "jacobian"} <= kinds
    assert {"pca_0", "pca_1", "sefa_0", "jacobian_1", "smile", "glasses"} <= set(found.names)
    assert found.latent_dim == 8
    for d in found:
        assert float(d.vector.norm()) == pytest.approx(1.0, abs=1e-5) and d.scale > 0
        assert d.source
    attribute = next(d for d in found if d.kind == "attribute")
    assert 0.0 <= attribute.scores["auroc"] <= 1.0 and "best_unit" in attribute.scores
    summary = json.loads((saved.parent / "directions.json").read_text())
    assert [d["name"] for d in summary["directions"]] == found.names
    assert summary["skipped"]  # the synthetic faces never set some attributes (Attractive ...)
    assert "Attractive" in found.skipped and "too few positives" in found.skipped["Attractive"]
    assert (saved.parent / "ranking.png").stat().st_size > 0
    pca = next(d for d in found if d.name == "pca_0")
    assert pca.scores["top_correlates"] and pca.scores["explained_variance"] > 0


def test_explain_directions_maps_are_the_engine_maps(
    runs: dict[str, Path], saved: Path, tmp_path: Path
) -> None:
    out = tmp_path / "explain"
    argv = ["explain", str(runs["vae"]), "--out", str(out), "--n", "4", "--method", "layercam"]
    assert main([*argv, "--directions", str(saved), "--names", "pca_0,smile"]) == 0
    arrays = np.load(out / "maps.npz")
    assert list(arrays["names"]) == ["pca_0", "smile"] and str(arrays["targets"]) == "directions"
    assert arrays["maps"].shape == (4, 2, 4, 4) and "mean_map" not in arrays.files
    found = DirectionSet.load(saved).select(["pca_0", "smile"])
    batch = open_run_data(runs["vae"], n=4, progress=False)
    expected = compute_cams(batch.run.model, batch.images, found.targets, method="layercam")
    np.testing.assert_allclose(arrays["maps"], expected.maps.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(arrays["vectors"], found.vectors.numpy())
    assert (out / "grid.png").is_file() and (out / "direction_pca_0.png").is_file()


def test_traverse_directions_steps_in_data_sds(
    runs: dict[str, Path], saved: Path, tmp_path: Path
) -> None:
    out = tmp_path / "traverse"
    argv = ["traverse", str(runs["vae"]), "--out", str(out), "--n", "2", "--sigmas=-1,0,2"]
    assert main([*argv, "--directions", str(saved), "--names", "smile"]) == 0
    arrays = np.load(out / "directions" / "traversal.npz")
    assert str(arrays["mode"]) == "direction" and list(arrays["names"]) == ["smile"]
    assert arrays["steps"].tolist() == [-1.0, 0.0, 2.0]
    assert arrays["effects"].shape[:3] == (2, 1, 3)
    assert np.abs(arrays["effects"][:, :, 1]).max() < 1e-5  # step 0 changes nothing
    assert arrays["heatmaps"].shape[:3] == (2, 1, 3)
    assert (out / "directions" / "direction_smile.png").is_file()
    assert not (out / "additive").exists()  # units are traversed only when asked


@pytest.fixture(scope="module")
def direction_metrics(runs: dict[str, Path]) -> tuple[dict, object]:
    batch = open_run_data(runs["vae"], n=20, split="all", progress=False)
    m = evaluate(batch, max_map_images=4, direction_images=12, sanity=False, progress=False)
    return jsonable(m), batch


def test_evaluate_directions_section_keys(direction_metrics: tuple) -> None:
    m, _ = direction_metrics
    section = m["directions"]
    assert section["layers"] == ["encoder.blocks.0", "encoder.blocks.1", "encoder.blocks.2"]
    assert section["methods"] == ["gradcam", "layercam", "hirescam"]
    scored = {n: e for n, e in section["attributes"].items() if "best" in e}
    assert scored, "no attribute direction was scored"
    for entry in scored.values():
        assert {"auroc", "n_pos", "parts", "best_unit", "layers", "best", "unit"} <= set(entry)
        assert entry["encoded"] is (entry["auroc"] >= 0.6)
        assert entry["faces"] + entry["faces_without_part"] + entry["faces_without_concept"] == 12
        assert entry["faces"] > 0
        for by_method in entry["layers"].values():
            for scores in by_method.values():
                assert set(scores) == SCORES
        assert {"layer", "method", "verdict"} | SCORES <= set(entry["best"])
        assert entry["unit"]["layer"] == entry["best"]["layer"]
        assert set(entry["best_unit"]) >= {"unit", "sign", "auroc"}
    assert "smile" in section["factors"] and "best" in section["factors"]["smile"]
    unsupervised = section["unsupervised"]
    assert {"pca_0", "sefa_0"} <= set(unsupervised)
    assert all(
        0 <= u["explained_variance"] <= 1 and u["top_correlates"] for u in unsupervised.values()
    )


def test_direction_scores_equal_an_independent_computation(direction_metrics: tuple) -> None:
    m, batch = direction_metrics
    found = evaluation_directions(batch.run, batch.data_path, True, True, progress=False)
    name, entry = next((n, e) for n, e in m["directions"]["attributes"].items() if "best" in e)
    layer, method = entry["best"]["layer"], entry["best"]["method"]
    images, parts = batch.images[:12], batch.parts[:12]
    cams = compute_cams(batch.run.model, images, [found[name].target], layer=layer, method=method)
    maps = upsample(cams.maps, images.shape[-1])
    mask = torch.isin(parts, torch.tensor(part_ids(found[name].parts)))
    # scored: the faces that have the part and show the attribute (label 1)
    keep = mask.flatten(1).any(1) & (batch.attrs[:12, ATTRIBUTE_NAMES.index(name)] > 0.5)
    assert entry["faces"] == int(keep.sum())
    hits = M.pointing_game(maps[keep], mask[keep]).float()
    flat = M.flat_maps(maps[keep])
    share = M.region_share(mask[keep])
    hits = torch.where(flat[:, 0], share, hits[:, 0])
    assert entry["best"]["pointing_game"] == pytest.approx(float(hits.mean()), abs=1e-6)
    assert entry["best"]["chance"] == pytest.approx(float(share.mean()), abs=1e-6)


def test_directions_on_the_official_layouts(
    runs: dict[str, Path], make_data, tmp_path: Path
) -> None:
    celeba = make_data.celeba(n=60, size=(32, 32), partition=[0] * 40 + [1] * 20)
    out = tmp_path / "celeba"
    argv = ["directions", str(runs["vae"]), "--data", str(celeba.root), "--out", str(out)]
    assert main(argv) == 0
    found = DirectionSet.load(out / "directions.npz")
    assert found.names and all(d.kind == "attribute" for d in found)
    hq = make_data.celebamask_hq(n=60, size=(32, 32))
    metrics = tmp_path / "hq.json"
    argv = ["evaluate", str(runs["vae"]), "--data", str(hq.root), "--out", str(metrics)]
    assert (
        main(
            [
                *argv,
                "--no-sanity",
                "--split",
                "all",
                "--max-map-images",
                "4",
                "--direction-images",
                "8",
            ]
        )
        == 0
    )
    section = json.loads(metrics.read_text())["directions"]
    assert section["attributes"] and section["map_images"] == 8
    explain = tmp_path / "hq-explain"
    argv = ["explain", str(runs["vae"]), "--data", str(hq.root), "--out", str(explain)]
    assert main([*argv, "--n", "3", "--directions", "attributes"]) == 0
    assert np.load(explain / "maps.npz")["maps"].shape[:2] == (3, len(section["attributes"]))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--directions", "attributes", "--names", "Smilin"], "no direction named 'Smilin'"),
        (["--directions", "missing.npz"], "neither a file nor a finder"),
        (["--names", "Smiling"], "--names selects directions: give --directions too"),
        (["--directions", "attributes", "--names", "Attractive"], "too few positives"),
    ],
)
def test_bad_direction_input_is_one_line(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, extra, message
) -> None:
    out = tmp_path / "out"
    assert main(["explain", str(runs["vae"]), "--out", str(out), "--n", "2", *extra]) == 2
    err = capsys.readouterr().err.strip()  # progress bars above, then the one error line
    assert message in err.splitlines()[-1] and "Traceback" not in err
    assert err.splitlines()[-1].startswith("latentcam explain: error:")
    assert not (out / "maps.npz").exists()


def test_bad_vectors_and_folders_are_one_line(
    runs: dict[str, Path], make_data, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    wide = tmp_path / "wide.txt"
    wide.write_text(" ".join(["1"] * 9) + "\n")
    argv = ["traverse", str(runs["vae"]), "--out", str(tmp_path / "t"), "--directions", str(wide)]
    assert main(argv) == 2
    assert "has 9 components; this model has K=8" in capsys.readouterr().err
    empty_a, empty_b = tmp_path / "a", tmp_path / "b"
    empty_a.mkdir()
    empty_b.mkdir()
    argv = ["directions", str(runs["vae"]), "--out", str(tmp_path / "d")]
    assert main([*argv, "--with", str(empty_a), "--without", str(empty_b)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(empty_a) in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "d" / "directions.npz").exists()
    assert main([*argv, "--with", str(empty_a)]) == 2
    assert "both --with and --without" in capsys.readouterr().err


def test_concept_from_two_folders(runs: dict[str, Path], make_data, tmp_path: Path) -> None:
    with_dir = make_data.folder(((32, 32), (32, 32))).root
    without_dir = make_data.folder(((32, 32), (32, 32), (32, 32))).root
    found = find_directions(
        runs["vae"],
        kinds=(),
        with_images=with_dir,
        without_images=without_dir,
        concept="stripes",
        progress=False,
    )
    d = found["stripes"]
    assert d.kind == "mean_difference" and d.scores["n_with"] == 2 and d.scores["n_without"] == 3


def test_concept_presence_selects_the_faces_that_show_each_concept() -> None:
    from latentcam.concepts import concept_presence
    from latentcam.explain.directions import make_direction, unit_direction

    K = 4
    smiling = make_direction("Smiling", torch.ones(K), "attribute", along_data=False)
    unit = unit_direction(2, K, name="Smiling:unit_2")
    smile = make_direction("smile", torch.ones(K), "factor", along_data=False)
    pca = make_direction("pca_0", torch.ones(K), "pca", along_data=False)
    attrs = torch.zeros(5, len(ATTRIBUTE_NAMES))
    attrs[[1, 3], ATTRIBUTE_NAMES.index("Smiling")] = 1.0
    factors = torch.tensor([[0.1], [0.9], [0.5], [0.7], [0.2]])  # median 0.5
    present = concept_presence(
        DirectionSet([smiling, unit, smile, pca], K), attrs, factors, ("smile",)
    )
    assert set(present) == {"Smiling", "Smiling:unit_2", "smile"}  # pca: every face
    assert present["Smiling"].tolist() == [False, True, False, True, False]
    assert present["Smiling:unit_2"].tolist() == present["Smiling"].tolist()
    assert present["smile"].tolist() == [False, True, False, True, False]
    assert concept_presence(DirectionSet([smiling], K)) == {}  # no labels: every face


def test_encoded_reads_the_held_out_probe() -> None:
    from latentcam.concepts import encoded

    assert encoded({"auroc": 0.83}) is True
    assert encoded({"auroc": 0.55}) is False
    assert encoded({"r2": 0.35}) is True
    assert encoded({"r2": -0.02}) is False
    assert encoded({"explained_variance": 0.2}) is None
