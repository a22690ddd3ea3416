"""ExplorerSession: every picture equals the public API's result computed by hand
(direction sliders included: a one-hot direction moves like its unit)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentcam.app.session import (
    MAX_UPLOAD_BYTES,
    ExplorerSession,
    UploadTooLarge,
    image_from_bytes,
    read_z_file,
)
from latentcam.concepts import find_directions
from latentcam.data.classes import ATTRIBUTE_IDS
from latentcam.data.imageio import load_image
from latentcam.errors import DataError, InputError
from latentcam.explain.cam import compute_cams, latent_cams
from latentcam.explain.directions import DirectionSet, make_direction
from latentcam.explain.metrics import rank_units
from latentcam.explain.targets import LatentDirection, SegClass
from latentcam.explain.traversal import effect_maps
from latentcam.generate import as_pictures, colorize_labels
from latentcam.io import write_json
from latentcam.models.segvae import predicted_labels
from latentcam.report.figures import to_uint8_hwc
from latentcam.training.losses import kl_per_unit

Open = Callable[..., ExplorerSession]


def _mu(s: ExplorerSession, image: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    with torch.no_grad():
        return s.model.encode(image, cond)[0]


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_ranking_is_kl_order(open_session: Open) -> None:
    s = open_session("vae")
    with torch.no_grad():
        mu, logvar = s.model.encode(s.images)
    expected = rank_units(kl_per_unit(mu, logvar)).tolist()
    assert s.ranking == expected
    assert s.units == expected[:4]
    assert [u for u, _ in s.image_view().gallery] == expected[:4]


def test_offset_decodes_mu_plus_offset(open_session: Open) -> None:
    s = open_session("vae")
    s.select_image(2)
    unit = s.units[1]
    before = s.decode().recon
    s.set_offset(unit, 0.7)
    mu = _mu(s, s.images[2:3], None)
    z = mu.clone()
    z[0, unit] += 0.7
    with torch.no_grad():
        expected = s.model.decode(z).recon
    assert expected is not None and before is not None
    torch.testing.assert_close(s.decode().recon, expected, rtol=0, atol=1e-6)
    assert (expected - before).abs().max() > 1e-4  # the offset changed the image
    live = s.live_view()
    assert live.unit == unit and live.offset == pytest.approx(0.7)
    shown = np.asarray(Image.open(io.BytesIO(live.decoded)))
    np.testing.assert_array_equal(shown, to_uint8_hwc(expected)[0])


def test_unit_cam_is_latent_cam_of_reencoded_output(open_session: Open) -> None:
    s = open_session("vae")
    unit = s.units[0]
    s.set_offset(unit, -1.5)
    picture = as_pictures(s.decode())
    explained, cam = s.unit_cam()
    expected = latent_cams(s.model, picture, units=[unit]).maps[:, 0]
    torch.testing.assert_close(explained, picture)
    torch.testing.assert_close(cam, expected)
    assert cam.shape == expected.shape and cam.dim() == 3


def test_effect_map_is_effect_maps_at_z(open_session: Open) -> None:
    s = open_session("vae", delta=2.0)
    unit = s.units[2]
    s.set_offset(unit, 0.4)
    expected = effect_maps(s.model, s.z(), [unit], delta=2.0)[:, 0]
    torch.testing.assert_close(s.unit_effect(), expected)
    # by hand: |decode(z + 2 e_k) - decode(z - 2 e_k)| averaged over colours
    step = torch.zeros_like(s.z())
    step[0, unit] = 2.0
    with torch.no_grad():
        plus, minus = s.model.decode(s.z() + step).recon, s.model.decode(s.z() - step).recon
    assert plus is not None and minus is not None
    torch.testing.assert_close(s.unit_effect(), (plus - minus).abs().mean(1), atol=1e-6, rtol=0)
    assert s.live_view().effect_max == pytest.approx(float(expected.max()))


def test_cvae_toggle_decodes_with_flipped_attribute(open_session: Open) -> None:
    s = open_session("cvae")
    assert s.attrs is not None and s.cond is not None
    index = ATTRIBUTE_IDS["Smiling"]
    original = s.cond.clone()
    flipped = original.clone()
    flipped[0, index] = 1.0 - flipped[0, index]
    before = s.decode().recon
    s.set_attribute("Smiling", float(flipped[0, index]))
    mu = _mu(s, s.images[0:1], original)  # mu is encoded with the image's own attributes
    with torch.no_grad():
        expected = s.model.decode(mu, flipped).recon
    assert expected is not None and before is not None
    torch.testing.assert_close(s.decode().recon, expected, rtol=0, atol=1e-6)
    assert (expected - before).abs().max() > 1e-4
    s.reset()
    torch.testing.assert_close(s.cond, original)
    with pytest.raises(InputError, match="Smilling"):
        s.set_attribute("Smilling", 1.0)


def test_z_json_round_trip(open_session: Open, tmp_path: Path) -> None:
    s = open_session("cvae")
    s.select_image(1)
    s.set_offset(s.units[0], 1.25)
    s.set_offset(7, -0.5)
    s.set_attribute("Eyeglasses", 1.0)
    record = s.z_record()
    assert record["model"] == "cvae" and record["latent_dim"] == s.latent_dim
    assert record["offsets"][7] == pytest.approx(-0.5)
    path = write_json(tmp_path / "z.json", record)

    fresh = open_session("cvae")  # another image, no offsets
    fresh.apply_z(read_z_file(path), str(path))
    torch.testing.assert_close(fresh.z(), s.z(), atol=1e-6, rtol=0)
    torch.testing.assert_close(fresh.offsets, s.offsets)
    torch.testing.assert_close(fresh.cond, s.cond)
    assert 7 in fresh.units
    torch.testing.assert_close(fresh.decode().recon, s.decode().recon, atol=1e-5, rtol=0)


def test_loaded_z_keeps_the_reconstruction_and_reset_returns_to_mu(open_session: Open) -> None:
    """After "Load z" the reconstruction is still decode(mu(x)) and Reset goes back to mu(x),
    not to the loaded z - offsets (issue #8, bug 3)."""
    s = open_session("vae")
    s.select_image(3)
    mu = _mu(s, s.images[3:4], None)
    with torch.no_grad():
        recon = s.model.decode(mu).recon
    record = s.z_record() | {
        "z": [0.5] * s.latent_dim,
        "offsets": [0.0] * s.latent_dim,
    }
    record["offsets"][s.units[0]] = 0.25
    s.apply_z(record, "z.json")
    torch.testing.assert_close(s.z(), torch.full((1, s.latent_dim), 0.5))
    torch.testing.assert_close(s.reconstruction().recon, recon, rtol=0, atol=0)
    shown = np.asarray(Image.open(io.BytesIO(s.image_view().recon)))
    assert recon is not None
    np.testing.assert_array_equal(shown, to_uint8_hwc(recon)[0])
    s.reset()
    torch.testing.assert_close(s.z(), mu, rtol=0, atol=0)
    assert float(s.offsets.abs().sum()) == 0.0


def test_z_file_errors(open_session: Open, tmp_path: Path) -> None:
    s = open_session("vae")
    with pytest.raises(InputError, match="not found"):
        read_z_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        read_z_file(tmp_path / "bad.json")
    record = s.z_record()
    record["z"] = record["z"][:-1]
    with pytest.raises(InputError, match="'z' must be a list of"):
        s.apply_z(record)
    other = s.z_record() | {"latent_dim": 3, "z": [0.0] * 3, "offsets": [0.0] * 3}
    with pytest.raises(InputError, match="latent_dim 3"):
        s.apply_z(other)
    with pytest.raises(InputError, match="saved from a cvae model; this run is a vae"):
        s.apply_z(s.z_record() | {"model": "cvae"})
    unnamed = s.z_record()
    del unnamed["model"]
    with pytest.raises(InputError, match="'model' must be one of vae, cvae, segvae, got None"):
        s.apply_z(unnamed)
    before = s.z_record()
    with pytest.raises(InputError, match="'latent_dim' must be a positive integer"):
        s.apply_z(before | {"latent_dim": True, "z": [0.0], "offsets": [0.0]})
    # every number within its range: z within +-50 prior SDs, offsets within the sliders'
    # +-10, steps within +-10 data SDs; bools and NaN are not numbers
    K = s.latent_dim
    for key, values in [
        ("z", [50.5] + [0.0] * (K - 1)),
        ("z", [float("nan")] * K),
        ("z", [True] + [0.0] * (K - 1)),
        ("offsets", [0.0] * (K - 1) + [-10.25]),
        ("offsets", [float("inf")] + [0.0] * (K - 1)),
    ]:
        limit = 50 if key == "z" else 10
        with pytest.raises(InputError) as refused:
            s.apply_z(before | {key: values}, "z.json")
        assert str(refused.value) == (
            f"z.json: '{key}' must be a list of {K} finite numbers within +-{limit}; save the "
            "vector again from the page"
        )
    name = s.directions.names[0]
    for moves in ({name: 10.5}, {name: True}, [name], {name: float("nan")}):
        with pytest.raises(InputError, match="'directions' must map direction names to steps"):
            s.apply_z(before | {"directions": moves})
    assert s.z_record() == before  # every refused record changed nothing
    edge = before | {"z": [50.0] + [-50.0] * (K - 1), "offsets": [10.0] + [0.0] * (K - 1)}
    s.apply_z(edge)
    assert s.z_record()["z"] == pytest.approx(edge["z"]) and s.offsets[0] == 10.0


def test_cvae_condition_is_checked(open_session: Open) -> None:
    s = open_session("cvae")
    before = s.z_record()
    bad = list(before["cond"])
    bad[3] = 1.5
    with pytest.raises(InputError, match="'cond' must be a list of 40 finite numbers within"):
        s.apply_z(before | {"cond": bad})
    bad[3] = -0.25
    with pytest.raises(InputError, match=r"'cond' must hold attributes in \[0, 1\]"):
        s.apply_z(before | {"cond": bad})
    for value in (1.5, True, float("nan")):
        with pytest.raises(
            InputError, match=r"attribute Smiling must be a finite number in \[0, 1\]"
        ):
            s.set_attribute("Smiling", value)
    assert s.z_record() == before


def test_copy_owns_the_state(open_session: Open) -> None:
    """A change tried on a copy (every control) leaves the session exactly as it was, and
    the copy shares the model and dataset instead of copying them."""
    s = open_session("cvae")
    s.set_offset(s.units[1], 0.5)
    before_record, before_info = s.z_record(), s.info()
    before_live = s.live_view()
    trial = s.copy()
    assert trial.model is s.model and trial.images is s.images and trial.run is s.run
    assert trial.z_record() == before_record and trial.info() == before_info
    outside = next(u for u in range(s.latent_dim) if u not in s.units)
    trial.set_offset(outside, 2.0)
    trial.set_direction(trial.directions.names[0], 1.5)
    trial.set_attribute("Eyeglasses", 1.0 - float(s.cond[0, ATTRIBUTE_IDS["Eyeglasses"]]))
    trial.select_random()
    trial.apply_z(before_record | {"z": [1.0] * s.latent_dim})
    assert trial.z_record() != before_record
    assert s.z_record() == before_record and s.info() == before_info
    assert s.live_view() == before_live
    # the random state is copied too: the copy and the session draw the same next image
    again = s.copy()
    assert again.select_random() == s.select_random()


def test_upload_matches_loader(open_session: Open, tmp_path: Path) -> None:
    s = open_session("vae")
    size = int(s.images.shape[-1])
    pixels = np.random.default_rng(3).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    path = tmp_path / "face.png"
    Image.fromarray(pixels).save(path)
    loaded, _ = load_image(path, size)  # the loaders' crop and resize
    expected = torch.from_numpy(loaded).permute(2, 0, 1).float().div(255.0)[None]
    got = image_from_bytes(path.read_bytes(), size, "face.png")
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    s.upload(path.read_bytes(), "face.png")
    torch.testing.assert_close(s.image, expected)
    torch.testing.assert_close(s.mu, _mu(s, expected, None))
    torch.testing.assert_close(s.z(), s.mu)
    assert s.image_view().source == "upload face.png"


def test_bad_uploads(open_session: Open) -> None:
    s = open_session("vae")
    before = s.image.clone()
    with pytest.raises(DataError, match="'notes.txt' is not a readable image"):
        s.upload(b"hello, not an image", "notes.txt")
    with pytest.raises(DataError, match="empty"):
        s.upload(b"", "empty.png")
    truncated = _png(np.zeros((40, 40, 3), np.uint8))[:60]
    with pytest.raises(DataError, match="trunc.png"):
        s.upload(truncated, "trunc.png")
    with pytest.raises(UploadTooLarge, match="limit is 20 MB"):
        image_from_bytes(b"\0" * (MAX_UPLOAD_BYTES + 1), 8, "huge.png")
    torch.testing.assert_close(s.image, before)  # the session kept its image


def test_bad_controls(open_session: Open) -> None:
    s = open_session("vae")
    with pytest.raises(InputError, match=f"0..{s.latent_dim - 1}"):
        s.set_offset(s.latent_dim, 1.0)
    # a bad value leaves the state as it was: no unit chosen, no slider added (bug 2)
    outside = next(u for u in range(s.latent_dim) if u not in s.units)
    chosen, units = s.unit, list(s.units)
    for value in (float("nan"), 10.5, float("-inf"), True):
        shown = "true" if value is True else repr(value)
        with pytest.raises(InputError) as refused:
            s.set_offset(outside, value)  # type: ignore[arg-type]
        assert str(refused.value) == (
            f"the offset of unit {outside} must be a finite number in [-10, 10], got {shown}"
        )
    assert s.unit == chosen and s.units == units and float(s.offsets.abs().sum()) == 0.0
    # Python's bool is an int: True must not be taken as unit, image or class 1
    with pytest.raises(InputError, match="latent unit true is out of range"):
        s.set_offset(True, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="latent unit false is out of range"):
        s.select_unit(False)
    with pytest.raises(InputError, match=r"image index true is out of range: .* 0\.\.5"):
        s.select_image(True)
    with pytest.raises(InputError, match=r"image index 1\.0 is out of range"):
        s.select_image(1.0)  # type: ignore[arg-type]
    assert s.unit == chosen and s.units == units and s.index == 0
    with pytest.raises(InputError, match="out of range"):
        s.select_image(99)
    with pytest.raises(InputError, match="CVAE"):
        s.set_attribute("Smiling", 1.0)
    with pytest.raises(InputError, match="segvae"):
        s.set_seg_class(0)


def test_bad_options(open_session: Open) -> None:
    with pytest.raises(InputError, match=r"unknown layer 'encoder\.block\.2'.*encoder\.blocks\.2"):
        open_session("vae", layer="encoder.block.2")
    with pytest.raises(InputError, match="gallery must be 0 or more per-unit maps, got -1"):
        open_session("vae", gallery=-1)
    with pytest.raises(InputError, match="unknown CAM method 'gradcamm'"):
        open_session("vae", method="gradcamm")
    s = open_session("vae", layer="encoder.blocks.1", gallery=0)
    assert s.info()["layer"] == "encoder.blocks.1" and s.image_view().gallery == []
    expected = latent_cams(s.model, s.image, layer="encoder.blocks.1").maps
    torch.testing.assert_close(s.input_cams(), expected)


def test_segvae_mask_and_seg_gradcam(open_session: Open) -> None:
    s = open_session("segvae")
    assert len(s.seg_classes) == 19 and s.seg_classes[s.seg_class] == "mouth"
    assert s.info()["unit_cam_on"] == "input"  # the page captions the unit map from this
    s.set_seg_class(13)  # hair
    expected = compute_cams(s.model, s.image, [SegClass(13)]).maps[:, 0]
    torch.testing.assert_close(s.seg_cam(), expected)
    s.set_offset(s.units[0], 2.0)
    live = s.live_view()
    assert live.seg_overlay is not None
    # the overlay, by hand: mask colours and input averaged, rounded half up
    seg_logits = s.decode().seg_logits
    assert seg_logits is not None
    colours = to_uint8_hwc(colorize_labels(predicted_labels(seg_logits), 19))[0].astype(int)
    face = to_uint8_hwc(s.image)[0].astype(int)
    blend = ((face + colours + 1) // 2).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(live.seg_overlay))), blend)
    assert len(np.unique(colours.reshape(-1, 3), axis=0)) >= 2  # more than one class shown
    view = s.image_view()
    assert view.seg_cam is not None
    # the "decoded" picture of a mask-only model is its coloured predicted mask
    shown = np.asarray(Image.open(io.BytesIO(live.decoded)))
    np.testing.assert_array_equal(shown, to_uint8_hwc(as_pictures(s.decode()))[0])
    # its unit map is the input's (there is no decoded image to re-encode)
    explained, cam = s.unit_cam()
    torch.testing.assert_close(explained, s.image)
    torch.testing.assert_close(cam, latent_cams(s.model, s.image, units=[s.unit]).maps[:, 0])


def test_figure_png(open_session: Open) -> None:
    import matplotlib.pyplot as plt

    s = open_session("vae")
    assert s.info()["unit_cam_on"] == "decoded"
    s.set_offset(s.units[1], 1.5)
    fig = s.figure()
    # row 1: six panels; row 2: the gallery (4 units) in the same six columns
    panels = [ax.get_images()[0].get_array() for ax in fig.axes[:12] if ax.get_images()]
    assert len(panels) == 10 and not fig.axes[10].get_images()
    assert [ax.get_title() for ax in fig.axes[:6]] == [
        "input",
        "reconstruction",
        "mean Grad-CAM",
        f"decoded (z{s.units[1]}+1.50)",
        f"Grad-CAM unit {s.units[1]} (re-encoded)",
        f"effect unit {s.units[1]} (d=3)",
    ]
    np.testing.assert_array_equal(panels[0], to_uint8_hwc(s.image)[0])
    np.testing.assert_array_equal(panels[3], to_uint8_hwc(as_pictures(s.decode()))[0])
    view = s.image_view()
    for (unit, png), panel, ax in zip(view.gallery, panels[6:], fig.axes[6:10], strict=True):
        np.testing.assert_array_equal(panel, np.asarray(Image.open(io.BytesIO(png))))
        assert [t.get_text() for t in ax.texts] == [f"z{unit}"]
    plt.close(fig)
    png = s.figure_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = Image.open(io.BytesIO(png)).size
    assert 2 * height < width < 5 * height  # two rows of six labelled panels


# ----------------------------------------------------------------------------- directions


def _one_hot(unit: int, K: int, scale: float, name: str = "e") -> DirectionSet:
    vector = torch.zeros(K)
    vector[unit] = 1.0
    return DirectionSet([make_direction(name, vector, "user", scale=scale)], K)


def test_attribute_directions_are_found_on_startup(
    open_session: Open, runs: dict[str, Path]
) -> None:
    s = open_session("vae")
    expected = find_directions(runs["vae"], kinds=("attributes",), progress=False)
    assert len(expected) >= 1 and s.directions.names == expected.names
    torch.testing.assert_close(s.directions.vectors, expected.vectors)
    info = s.info()
    assert [d["name"] for d in info["directions"]] == expected.names
    assert [d["scale"] for d in info["directions"]] == pytest.approx(expected.scales.tolist())
    assert info["direction_steps"] == [0.0] * len(expected) and info["direction"] is None
    picked = open_session("vae", names=expected.names[:1])
    assert picked.directions.names == expected.names[:1]


def test_a_one_hot_direction_moves_like_its_unit(open_session: Open) -> None:
    """Direction e_k with data spread 0.5, moved 1.2 sd, is unit k moved by 0.6: the same z,
    image, heatmap and (with the effect step scaled alike) effect map."""
    by_unit = open_session("vae", delta=1.5)
    unit = by_unit.units[1]
    K = by_unit.latent_dim
    by_direction = open_session("vae", directions=_one_hot(unit, K, 0.5))
    by_unit.set_offset(unit, 0.6)
    by_direction.set_direction("e", 1.2)
    torch.testing.assert_close(by_direction.z(), by_unit.z(), rtol=0, atol=1e-6)
    assert by_direction.offsets.abs().sum() == 0  # the move is the direction's, not an offset
    torch.testing.assert_close(by_direction.decode().recon, by_unit.decode().recon)
    _, cam_direction = by_direction.unit_cam()
    _, cam_unit = by_unit.unit_cam()
    torch.testing.assert_close(cam_direction, cam_unit, rtol=1e-4, atol=1e-6)
    # effect: delta 3 sd of 0.5 each = 1.5 latent units, the unit session's delta
    torch.testing.assert_close(
        by_direction.unit_effect(), by_unit.unit_effect(), rtol=1e-5, atol=1e-6
    )
    live = by_direction.live_view()
    assert live.direction == "e" and live.step == pytest.approx(1.2) and live.target == "e"


def test_direction_maps_are_those_of_latent_direction(open_session: Open) -> None:
    s = open_session("vae")
    name = s.directions.names[0]
    direction = s.directions[name]
    s.set_offset(s.units[0], 0.5)  # a unit move and a direction move add up
    s.set_direction(name, -1.5)
    mu = _mu(s, s.images[0:1], None)
    z = mu.clone()
    z[0, s.units[0]] += 0.5
    z = z + -1.5 * direction.displacement[None]  # along the pattern, one data SD per step
    torch.testing.assert_close(s.z(), z, rtol=0, atol=1e-6)
    picture = as_pictures(s.decode())
    expected = compute_cams(s.model, picture, [LatentDirection(direction.vector, name)]).maps
    _, cam = s.unit_cam()
    torch.testing.assert_close(cam, expected[:, 0])
    effect = effect_maps(s.model, z, delta=3.0, directions=direction.displacement[None])
    torch.testing.assert_close(s.unit_effect(), effect[:, 0], rtol=1e-5, atol=1e-6)
    assert s.info()["direction"] == name
    assert s.info()["direction_steps"][0] == pytest.approx(-1.5)
    s.select_unit(s.units[0])  # choosing a unit leaves the direction's move in z
    assert s.direction is None and s.live_view().target == f"z{s.units[0]}"
    torch.testing.assert_close(s.z(), z, rtol=0, atol=1e-6)
    s.reset()
    torch.testing.assert_close(s.z(), mu, rtol=0, atol=0)


def test_cvae_direction_decodes_with_the_condition(open_session: Open) -> None:
    s = open_session("cvae")
    assert len(s.directions) >= 1 and s.cond is not None
    name = s.directions.names[-1]
    direction = s.directions[name]
    s.set_direction(name, 2.0)
    mu = _mu(s, s.images[0:1], s.cond)
    z = mu + 2.0 * direction.displacement[None]
    with torch.no_grad():
        expected = s.model.decode(z, s.cond).recon
    torch.testing.assert_close(s.decode().recon, expected, rtol=0, atol=1e-5)


def test_bad_direction_controls_leave_the_state(open_session: Open) -> None:
    s = open_session("vae")
    name = s.directions.names[0]
    with pytest.raises(InputError, match="no direction named 'Smilling'"):
        s.set_direction("Smilling", 1.0)
    with pytest.raises(InputError, match="no direction named 'Smilling'"):
        s.select_direction("Smilling")
    for value in (float("nan"), 10.5, float("inf"), False):
        with pytest.raises(InputError) as refused:
            s.set_direction(name, value)
        shown = "false" if value is False else repr(value)
        assert str(refused.value) == (
            f"the step along direction {name} (in data standard deviations) must be a finite "
            f"number in [-10, 10], got {shown}"
        )
    assert s.direction is None and float(s.direction_steps.abs().sum()) == 0.0
    other = DirectionSet([make_direction("w", torch.ones(3), "user")], 3)
    with pytest.raises(InputError, match="K=3 latent units; this model has K=8"):
        open_session("vae", directions=other)


def test_directions_from_a_file_and_the_z_record(open_session: Open, tmp_path: Path) -> None:
    s = open_session("vae")
    path = s.directions.select(s.directions.names[:2]).save(tmp_path / "directions.npz")
    loaded = open_session("vae", directions=path)
    assert loaded.directions.names == s.directions.names[:2]
    second = loaded.directions.names[1]
    loaded.set_offset(loaded.units[0], -0.75)
    loaded.set_direction(second, 1.25)
    record = loaded.z_record()
    assert record["directions"] == {second: pytest.approx(1.25)}
    saved = write_json(tmp_path / "z.json", record)

    fresh = open_session("vae", directions=path)  # the same directions: the sliders come back
    fresh.apply_z(read_z_file(saved), str(saved))
    torch.testing.assert_close(fresh.z(), loaded.z(), rtol=0, atol=1e-6)
    torch.testing.assert_close(fresh.direction_steps, loaded.direction_steps)
    bare = open_session("vae", directions=DirectionSet([], s.latent_dim))  # none: kept in z
    bare.apply_z(read_z_file(saved), str(saved))
    torch.testing.assert_close(bare.z(), loaded.z(), rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="missing.npz.* is neither a file nor a finder"):
        open_session("vae", directions=tmp_path / "missing.npz")
