"""The synthetic face renderer: shapes, determinism, truthful labels, factor locality, layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentcam.data import synthetic as synth
from latentcam.data.classes import ATTRIBUTE_IDS, ATTRIBUTE_NAMES, PART_IDS, PART_NAMES, REGIONS
from latentcam.data.synthetic import (
    FACTOR_IDS,
    FACTOR_NAMES,
    FACTOR_REGIONS,
    THRESHOLDS,
    attributes_from_factors,
    render_faces,
    render_from_factors,
    sample_factors,
    write_synthetic,
)
from latentcam.errors import InputError


def _has_part(parts: np.ndarray, name: str) -> np.ndarray:
    """(n,) bool: which label maps (n, S, S) contain the part."""
    return (parts == PART_IDS[name]).any(axis=(1, 2))


def _attr(attrs: np.ndarray, name: str) -> np.ndarray:
    return attrs[:, ATTRIBUTE_IDS[name]] == 1


@pytest.fixture(scope="module")
def faces() -> synth.SynthBatch:
    return render_faces(300, 32, seed=7)


# --------------------------------------------------------------------------- shapes, determinism


def test_shapes_dtypes_and_ranges() -> None:
    batch = render_faces(20, 48, seed=1)
    assert batch.images.shape == (20, 48, 48, 3) and batch.images.dtype == np.uint8
    assert batch.parts.shape == (20, 48, 48) and batch.parts.dtype == np.uint8
    assert batch.attrs.shape == (20, 40) and batch.attrs.dtype == np.int8
    assert batch.factors.shape == (20, len(FACTOR_NAMES)) and batch.factors.dtype == np.float32
    assert batch.parts.max() < len(PART_NAMES)
    assert set(np.unique(batch.attrs)) <= {-1, 1}
    assert 0.0 <= batch.factors.min() and batch.factors.max() <= 1.0
    # every image is a face: skin, eyes, a nose, lips, a neck and clothes in the label map
    for part in ("skin", "nose", "l_eye", "r_eye", "u_lip", "l_lip", "neck", "cloth"):
        assert _has_part(batch.parts, part).all(), part
    for part in ("l_brow", "r_brow"):  # thin brows under long bangs may vanish
        assert _has_part(batch.parts, part).mean() >= 0.8, part
    # the picture is not flat: the face differs from the background
    skin = batch.parts == PART_IDS["skin"]
    back = batch.parts == 0
    assert np.abs(batch.images[skin].mean(0) - batch.images[back].mean(0)).max() > 10


def test_factor_tables_are_consistent() -> None:
    assert len(FACTOR_NAMES) >= 15 and len(set(FACTOR_NAMES)) == len(FACTOR_NAMES)
    assert set(FACTOR_REGIONS) == set(FACTOR_NAMES)
    for name, regions in FACTOR_REGIONS.items():
        assert regions and set(regions) <= set(REGIONS), name
    assert FACTOR_REGIONS["smile"] == ("mouth",)
    assert FACTOR_REGIONS["glasses"] == ("glasses",)
    assert FACTOR_REGIONS["background_hue"] == ("background",)
    assert set(FACTOR_REGIONS["yaw"]) == set(REGIONS)


def test_same_seed_same_faces_and_chunking_is_invisible() -> None:
    whole = render_faces(20, 32, seed=3)  # 20 > one internal pass of 16 images at 32 px
    again = render_faces(20, 32, seed=3)
    head = render_faces(7, 32, seed=3, start=0)
    tail = render_faces(13, 32, seed=3, start=7)
    for field in synth.SynthBatch._fields:
        assert np.array_equal(getattr(whole, field), getattr(again, field)), field
        joined = np.concatenate([getattr(head, field), getattr(tail, field)])
        assert np.array_equal(getattr(whole, field), joined), field
    other = render_faces(20, 32, seed=4)
    assert not np.array_equal(whole.factors, other.factors)
    assert (whole.images != other.images).mean() > 0.5


def test_factors_are_independent_and_uniform() -> None:
    factors = sample_factors(2000, seed=0).factors
    assert np.allclose(factors.mean(0), 0.5, atol=0.03)
    corr = np.corrcoef(factors.T)
    assert np.abs(corr - np.eye(len(FACTOR_NAMES))).max() < 0.1


def test_row_blocks_do_not_clip_any_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small parts are drawn on blocks of rows; drawing on the whole image changes nothing."""
    corners = np.random.default_rng(0).integers(0, 2, (24, len(FACTOR_NAMES))).astype(np.float32)
    factors = np.concatenate([corners, sample_factors(16, seed=5).factors])
    banded = render_from_factors(factors, 45, noise_seed=1)
    monkeypatch.setattr(synth, "_USE_BANDS", False)
    whole = render_from_factors(factors, 45, noise_seed=1)
    assert np.array_equal(banded.images, whole.images)
    assert np.array_equal(banded.parts, whole.parts)


# --------------------------------------------------------------------------- truthful labels


@pytest.mark.parametrize(
    "attribute, part",
    [
        ("Eyeglasses", "eye_g"),
        ("Wearing_Hat", "hat"),
        ("Mouth_Slightly_Open", "mouth"),
        ("Wearing_Earrings", "ear_r"),
        ("Wearing_Necklace", "neck_l"),
    ],
)
def test_binary_attributes_match_their_parts(
    faces: synth.SynthBatch, attribute: str, part: str
) -> None:
    on = _attr(faces.attrs, attribute)
    assert np.array_equal(on, _has_part(faces.parts, part))
    assert 0.15 <= on.mean() <= 0.55  # a good fraction of faces, for models to learn it


def test_attributes_follow_the_factors(faces: synth.SynthBatch) -> None:
    f = {name: faces.factors[:, i] for i, name in enumerate(FACTOR_NAMES)}
    assert np.array_equal(_attr(faces.attrs, "Smiling"), f["smile"] > THRESHOLDS["smiling"])
    bald = _attr(faces.attrs, "Bald")
    assert np.array_equal(bald, f["hair_length"] < THRESHOLDS["bald"])
    assert not _has_part(faces.parts[bald], "hair").any()
    assert _has_part(faces.parts[~bald], "hair").all()
    colours = faces.attrs[:, [ATTRIBUTE_IDS[a] for a in synth.HAIR_COLOR_RANGES]] == 1
    assert (colours.sum(1) <= 1).all() and not colours[bald].any()
    assert np.array_equal(_attr(faces.attrs, "No_Beard"), ~_attr(faces.attrs, "Mustache"))
    assert 0.2 <= _attr(faces.attrs, "Male").mean() <= 0.8
    assert 0.15 <= _attr(faces.attrs, "Bangs").mean() <= 0.55
    expressed = {
        "Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Wearing_Hat", "Bangs", "Bald",
        "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Male", "Wearing_Earrings",
        "Wearing_Necklace", "Wearing_Lipstick", "Pale_Skin", "Narrow_Eyes", "Big_Lips",
        "Big_Nose", "Bushy_Eyebrows", "No_Beard", "Mustache", "5_o_Clock_Shadow",
    }  # fmt: skip
    for name in ATTRIBUTE_NAMES:
        rate = _attr(faces.attrs, name).mean()
        assert (rate > 0.03) if name in expressed else (rate == 0.0), name


def test_attributes_of_hand_made_factors() -> None:
    low = np.zeros(len(FACTOR_NAMES), np.float32)  # bald, narrow-eyed, pale, frowning
    high = np.ones(len(FACTOR_NAMES), np.float32)
    attrs = attributes_from_factors(np.stack([low, high]))
    on_low = {ATTRIBUTE_NAMES[i] for i in np.flatnonzero(attrs[0] == 1)}
    on_high = {ATTRIBUTE_NAMES[i] for i in np.flatnonzero(attrs[1] == 1)}
    assert on_low == {"Bald", "Male", "Narrow_Eyes", "Pale_Skin", "No_Beard"}
    assert on_high == {
        "Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Wearing_Hat", "Bangs", "Gray_Hair",
        "Male", "Wearing_Earrings", "Wearing_Necklace", "Wearing_Lipstick", "Big_Lips",
        "Big_Nose", "Bushy_Eyebrows", "Mustache",
    }  # fmt: skip


# --------------------------------------------------------------------------- factor locality


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Grow (n, S, S) boolean masks by one pixel (4-neighbourhood)."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


@pytest.mark.parametrize("factor", FACTOR_NAMES)
def test_each_factor_moves_only_its_regions(factor: str) -> None:
    """Change one factor, hold the rest and the noise: the pixels that change lie in the
    factor's regions of the image before or after (anti-aliased edges: +1 pixel)."""
    base = sample_factors(12, seed=11).factors
    moved = base.copy()
    j = FACTOR_IDS[factor]
    moved[:, j] = (base[:, j] + 0.5) % 1.0  # a far value; crosses every on/off threshold
    a = render_from_factors(base, 48, noise_seed=5)
    b = render_from_factors(moved, 48, noise_seed=5)
    diff = np.abs(a.images.astype(np.int16) - b.images).max(-1)
    ids = [i for region in FACTOR_REGIONS[factor] for i in REGIONS[region]]
    declared = _dilate(np.isin(a.parts, ids) | np.isin(b.parts, ids))
    changed = diff > 8
    assert changed.sum() >= 12, "the factor must visibly change the faces"
    assert (changed & declared).sum() / changed.sum() >= 0.9
    assert ((diff > 0) & declared).sum() / (diff > 0).sum() >= 0.85


def test_smile_and_mouth_open_change_the_mouth_only() -> None:
    base = np.full((1, len(FACTOR_NAMES)), 0.5, np.float32)
    base[0, FACTOR_IDS["mouth_open"]] = 0.0
    base[0, FACTOR_IDS["smile"]] = 0.0
    opened = base.copy()
    opened[0, FACTOR_IDS["mouth_open"]] = 1.0
    opened[0, FACTOR_IDS["smile"]] = 1.0
    a = render_from_factors(base, 64, noise_seed=2)
    b = render_from_factors(opened, 64, noise_seed=2)
    assert not _has_part(a.parts, "mouth")[0] and _has_part(b.parts, "mouth")[0]
    assert (a.attrs[0, ATTRIBUTE_IDS["Smiling"]], b.attrs[0, ATTRIBUTE_IDS["Smiling"]]) == (-1, 1)
    changed = np.abs(a.images.astype(np.int16) - b.images).max(-1) > 0
    mouth = _dilate(np.isin(a.parts, REGIONS["mouth"]) | np.isin(b.parts, REGIONS["mouth"]))
    assert changed.any() and not (changed & ~mouth).any()


# --------------------------------------------------------------------------- the written layout


def _read_layout(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_write_synthetic_layout(tmp_path: Path) -> None:
    out = write_synthetic(tmp_path / "faces", n=5, size=32, seed=2, progress=False)
    assert out == tmp_path / "faces"
    batch = render_faces(5, 32, seed=2)
    assert sorted(p.name for p in (out / "CelebA-HQ-img").iterdir()) == [
        f"{i}.jpg" for i in range(5)
    ]
    with Image.open(out / "CelebA-HQ-img" / "3.jpg") as img:
        assert img.size == (32, 32) and img.mode == "RGB"
        assert np.abs(np.asarray(img).astype(int) - batch.images[3]).mean() < 6
    for i in range(5):
        present = [PART_NAMES[c] for c in np.unique(batch.parts[i]) if c != 0]
        files = sorted((out / "CelebAMask-HQ-mask-anno" / "0").glob(f"{i:05d}_*.png"))
        assert sorted(p.name for p in files) == sorted(f"{i:05d}_{name}.png" for name in present)
        rebuilt = np.zeros((32, 32), np.uint8)  # later ids win, as in CelebAMask-HQ
        for cid, name in enumerate(PART_NAMES[1:], start=1):
            path = out / "CelebAMask-HQ-mask-anno" / "0" / f"{i:05d}_{name}.png"
            if path.exists():
                with Image.open(path) as mask_img:
                    assert mask_img.mode == "L"
                    mask = np.asarray(mask_img)
                assert set(np.unique(mask)) <= {0, 255}
                rebuilt[mask == 255] = cid
        assert np.array_equal(rebuilt, batch.parts[i])
    lines = (out / "CelebAMask-HQ-attribute-anno.txt").read_text().splitlines()
    assert lines[0] == "5" and lines[1].split(" ") == list(ATTRIBUTE_NAMES)
    for i, line in enumerate(lines[2:]):
        name, *values = line.split(" ")
        assert name == f"{i}.jpg" and [int(x) for x in values] == batch.attrs[i].tolist()
    assert len(lines) == 7
    rows = (out / "synthetic-factors.csv").read_text().splitlines()
    assert rows[0] == "image," + ",".join(FACTOR_NAMES) and len(rows) == 6
    for i, row in enumerate(rows[1:]):
        name, *values = row.split(",")
        assert name == f"{i}.jpg"
        assert np.array_equal(np.array(values, np.float32), batch.factors[i])
    meta = json.loads((out / "synthetic-meta.json").read_text())
    assert meta["generator"] == "latentcam.synthetic" and meta["version"] == 1
    assert (meta["n"], meta["size"], meta["seed"]) == (5, 32, 2)
    assert meta["factor_names"] == list(FACTOR_NAMES)
    assert meta["factor_regions"] == {k: list(v) for k, v in FACTOR_REGIONS.items()}
    assert [p.name for p in tmp_path.iterdir()] == ["faces"]  # no temporary folder left


def test_write_synthetic_is_byte_identical_and_groups_masks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth, "_MASKS_PER_FOLDER", 2)  # CelebAMask-HQ: i // 2000
    (tmp_path / "b").mkdir()  # an existing empty folder is fine
    first = _read_layout(write_synthetic(tmp_path / "a", n=5, size=24, seed=9, progress=False))
    second = _read_layout(write_synthetic(tmp_path / "b", n=5, size=24, seed=9, progress=False))
    assert first == second
    folders = {Path(name).parts[1] for name in first if name.startswith("CelebAMask-HQ-mask-anno")}
    assert folders == {"0", "1", "2"}
    assert "CelebAMask-HQ-mask-anno/2/00004_skin.png" in first


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_write_masks", broken)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic(tmp_path / "out", n=3, size=16, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be"),
        ({"size": 8}, "size must be between"),
        ({"size": 2048}, "size must be between"),
        ({"size": 32.0}, "size must be an integer"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_bad_arguments_raise_input_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"n": 2, "size": 32, "seed": 0} | kwargs
    with pytest.raises(InputError, match=message):
        write_synthetic(tmp_path / "out", progress=False, **args)
    with pytest.raises(InputError, match=message):
        render_faces(**args)
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    for target in (tmp_path / "full", tmp_path / "file"):
        with pytest.raises(InputError, match="already exists and is not an empty folder"):
            write_synthetic(target, n=2, size=16, seed=0, progress=False)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_render_from_factors_checks_its_input() -> None:
    good = np.full(len(FACTOR_NAMES), 0.5, np.float32)
    assert render_from_factors(good, 16).images.shape == (1, 16, 16, 3)
    with pytest.raises(InputError, match="shape"):
        render_from_factors(good[:-1], 16)
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        render_from_factors(good + 1.0, 16)
    with pytest.raises(InputError, match="noise_seed"):
        render_from_factors(np.stack([good, good]), 16, noise_seed=[1, 2, 3])
