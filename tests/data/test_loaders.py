"""Loaders: layout detection, decoding, resizing, label maps, items, splits and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from latentcam.data.classes import ATTRIBUTE_NAMES, PART_NAMES
from latentcam.data.dataset import FaceDataset, load_face_data, make_splits
from latentcam.data.imageio import assemble_part_masks, load_image, load_label_map
from latentcam.data.layouts import detect_layout
from latentcam.errors import DataError, InputError

SKIN, NOSE, HAIR = PART_NAMES.index("skin"), PART_NAMES.index("nose"), PART_NAMES.index("hair")


def save_image(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def load(written: Any, size: int, cache_dir: Path, **kwargs: Any) -> Any:
    return load_face_data(written.root, size, cache_dir=cache_dir, progress=False, **kwargs)


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("layout", ["celebamask_hq", "celeba", "paired", "folder"])
def test_detect_layout(make_data: Any, layout: str) -> None:
    written = getattr(make_data, layout)()
    assert detect_layout(written.root) == layout


def test_celebamask_hq_loads_exact_pixels_label_maps_and_attributes(
    make_data: Any, cache_dir: Path
) -> None:
    written = make_data.celebamask_hq(n=4, size=(20, 20), factors=True)
    data = load(written, 20, cache_dir)
    assert data.layout == "celebamask_hq" and data.names == ["0.png", "1.png", "2.png", "3.png"]
    np.testing.assert_array_equal(data.images, np.stack(written.images))  # PNG, no resize
    np.testing.assert_array_equal(data.parts, written.parts)
    np.testing.assert_array_equal(data.attrs, (written.attrs > 0).astype(np.int8))  # -1/1 -> 0/1
    assert data.factor_names == ("smile", "yaw")
    np.testing.assert_allclose(data.factors, [[0.0, 0.0], [0.1, -1.0], [0.2, -2.0], [0.3, -3.0]])
    assert data.native_sizes == {"20x20": 4}


def test_overlapping_parts_later_id_wins(tmp_path: Path) -> None:
    # hair (13) and skin (1) both claim row 1; given in reverse order on purpose
    skin = np.zeros((4, 4, 3), np.uint8)  # an RGB mask: white marks the part
    skin[1:3] = 255
    hair = np.zeros((4, 4), bool)  # a 1-bit mask
    hair[:2] = True
    nose = np.zeros((4, 4), np.uint8)  # a grey mask
    nose[1, 1] = 1  # any nonzero value marks the part (as the official g_mask.py)
    files = {
        c: save_image(tmp_path / f"00000_{PART_NAMES[c]}.png", m)
        for c, m in [(SKIN, skin), (HAIR, hair), (NOSE, nose)]
    }
    label = assemble_part_masks(
        ((HAIR, files[HAIR]), (NOSE, files[NOSE]), (SKIN, files[SKIN])), 4, (4, 4)
    )
    expected = np.array([[13, 13, 13, 13], [13, 13, 13, 13], [1, 1, 1, 1], [0, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(label, expected)  # the nose (2) lies under the hair (13)


def test_masks_half_the_image_size_are_accepted(make_data: Any, cache_dir: Path) -> None:
    # the real CelebAMask-HQ: 1024 px images, 512 px masks
    written = make_data.celebamask_hq(n=2, size=(40, 40), mask_size=(20, 20))
    data = load(written, 20, cache_dir)
    np.testing.assert_array_equal(data.parts[1], make_data.face_parts(20, 20, shift=1))


def test_celebamask_hq_without_masks_or_attributes_loads_images(
    make_data: Any, cache_dir: Path
) -> None:
    written = make_data.celebamask_hq(n=3, masks=False, attrs=False)
    data = load(written, 20, cache_dir)
    assert data.parts is None and data.attrs is None and data.factors is None
    assert data.num_classes == 0 and data.images.shape == (3, 20, 20, 3)


def test_celeba_crops_the_centre_and_uses_the_official_partition(
    make_data: Any, cache_dir: Path
) -> None:
    written = make_data.celeba(n=6, size=(24, 32), ext=".png")
    data = load(written, 24, cache_dir)
    # 24x32 portrait -> the centre 24 rows, no resize
    for i in range(6):
        np.testing.assert_array_equal(data.images[i], written.images[i][4:28])
    assert data.split_source == "official"
    assert {k: v.tolist() for k, v in data.splits.items()} == {
        "train": [0, 1, 2],
        "val": [3, 4],
        "test": [5],
    }
    np.testing.assert_array_equal(data.attrs, (written.attrs > 0).astype(np.int8))


def test_celeba_kaggle_nesting(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celeba(n=6)
    inner = written.root / "img_align_celeba"
    nested = inner / "img_align_celeba"
    nested.mkdir()
    for f in inner.glob("*.jpg"):
        f.rename(nested / f.name)
    assert load(written, 16, cache_dir).num_images == 6


def test_attribute_columns_are_matched_by_name(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celeba(n=6, partition=None)
    order = list(reversed(ATTRIBUTE_NAMES))
    make_data.write_attr_file(
        written.root / "list_attr_celeba.txt", written.names, written.attrs[:, ::-1], header=order
    )
    data = load(written, 16, cache_dir)
    np.testing.assert_array_equal(data.attrs, (written.attrs > 0).astype(np.int8))
    assert data.split_source == "seeded"


@pytest.mark.parametrize("mask_mode", ["P", "L"])
@pytest.mark.parametrize(
    "attr_name", ["attributes.txt", "list_attr_celeba.txt", "CelebAMask-HQ-attribute-anno.txt"]
)
def test_paired_folders(make_data: Any, cache_dir: Path, mask_mode: str, attr_name: str) -> None:
    written = make_data.paired(n=3, mask_mode=mask_mode, attrs=True, attr_name=attr_name)
    data = load(written, 20, cache_dir)
    assert data.layout == "paired" and data.names == written.names
    np.testing.assert_array_equal(data.parts, written.parts)
    np.testing.assert_array_equal(data.images, np.stack(written.images))
    np.testing.assert_array_equal(data.attrs, (written.attrs > 0).astype(np.int8))


def test_plain_folder_of_mixed_sizes(make_data: Any, cache_dir: Path) -> None:
    written = make_data.folder(sizes=[(20, 20), (24, 32), (32, 24)])
    data = load(written, 20, cache_dir)
    assert data.layout == "folder" and data.parts is None and data.attrs is None
    # 24x32 portrait -> centre rows 4..28, then 24 -> 20 px
    portrait = Image.fromarray(written.images[1][4:28]).resize((20, 20), Image.Resampling.LANCZOS)
    assert np.abs(data.images[1].astype(int) - np.asarray(portrait, dtype=int)).max() <= 1
    # 32x24 landscape -> centre columns 4..28, then 24 -> 20 px
    landscape = Image.fromarray(written.images[2][:, 4:28]).resize(
        (20, 20), Image.Resampling.LANCZOS
    )
    assert np.abs(data.images[2].astype(int) - np.asarray(landscape, dtype=int)).max() <= 1
    assert data.native_sizes == {"20x20": 1, "24x32": 1, "32x24": 1}


def test_lfw_faces_from_scikit_image(tmp_path: Path, cache_dir: Path) -> None:
    skdata = pytest.importorskip("skimage.data")
    faces = skdata.lfw_subset()[:100]  # the first 100 of lfw_subset are faces, 25x25 grey floats
    folder = tmp_path / "lfw"
    for i, face in enumerate(faces):
        save_image(folder / f"face{i:03d}.png", np.rint(face * 255).astype(np.uint8))
    data = load_face_data(folder, 32, cache_dir=cache_dir, progress=False)
    assert (
        data.layout == "folder" and data.num_images == 100 and data.images.shape == (100, 32, 32, 3)
    )
    assert data.names[:2] == ["face000.png", "face001.png"]
    images = np.asarray(data.images, dtype=np.float64)
    assert (images[..., 0] == images[..., 1]).all() and (
        images[..., 1] == images[..., 2]
    ).all()  # grey -> RGB
    # resizing 25 -> 32 keeps each face's mean brightness (within 1 grey level)
    np.testing.assert_allclose(
        images[..., 0].mean(axis=(1, 2)), faces.mean(axis=(1, 2)) * 255, atol=1.0
    )
    assert sum(len(v) for v in data.splits.values()) == 100


# ----------------------------------------------------------------------------- decoding


def test_resize_is_antialiased(tmp_path: Path) -> None:
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1 px checkerboard
    small, native = load_image(save_image(tmp_path / "board.png", board), 8)
    assert native == (64, 64)
    assert np.abs(small.astype(float) - 127.5).max() < 3  # nearest would give 0 or 255


def test_nearest_mask_resize_keeps_valid_ids(tmp_path: Path) -> None:
    label = np.random.default_rng(0).integers(0, 19, (20, 20)).astype(np.uint8)
    path = save_image(tmp_path / "m.png", label)
    np.testing.assert_array_equal(
        load_label_map(path, 10, (20, 20)), label[1::2, 1::2]
    )  # centres of 2x2 cells
    odd = load_label_map(path, 7, (20, 20))
    assert set(np.unique(odd)) <= set(np.unique(label))
    index = np.floor((np.arange(7) + 0.5) * 20 / 7).astype(int)
    np.testing.assert_array_equal(odd, label[np.ix_(index, index)])


def test_mask_of_a_portrait_gets_the_image_crop(tmp_path: Path) -> None:
    label = np.zeros((12, 8), np.uint8)
    label[:2] = 13
    label[2:10] = 1
    label[10:] = 18
    path = save_image(tmp_path / "m.png", label)
    np.testing.assert_array_equal(load_label_map(path, 8, (8, 12)), np.ones((8, 8), np.uint8))


@pytest.mark.parametrize(
    ("mode", "make", "expected"),
    [
        ("L", lambda: Image.fromarray(np.full((4, 4), 77, np.uint8)), (77, 77, 77)),
        (
            "LA",
            lambda: Image.fromarray(
                np.dstack([np.full((4, 4), 77, np.uint8), np.zeros((4, 4), np.uint8)])
            ),
            (255, 255, 255),
        ),
        (
            "RGBA",
            lambda: Image.fromarray(
                np.dstack([np.full((4, 4, 3), 10, np.uint8), np.full((4, 4), 255, np.uint8)])
            ),
            (10, 10, 10),
        ),
        ("RGBA-clear", lambda: Image.fromarray(np.zeros((4, 4, 4), np.uint8)), (255, 255, 255)),
        ("I;16", lambda: Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)), (100, 100, 100)),
        ("1", lambda: Image.fromarray(np.ones((4, 4), bool)), (255, 255, 255)),
    ],
)
def test_image_modes_become_rgb(
    tmp_path: Path, mode: str, make: object, expected: tuple[int, int, int]
) -> None:
    path = tmp_path / "x.png"
    make().save(path)  # type: ignore[operator]
    pixels, _ = load_image(path, 4)
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 4, 3)
    assert tuple(pixels[0, 0]) == expected


def test_palette_image_uses_its_colours(tmp_path: Path) -> None:
    im = Image.frombytes("P", (2, 2), bytes([0, 1, 1, 0]))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.save(tmp_path / "p.png")
    pixels, _ = load_image(tmp_path / "p.png", 2)
    assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[0, 1]) == (0, 0, 255)


# ----------------------------------------------------------------------------- items and splits


def test_items_and_batches(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celebamask_hq(n=10, factors=True)
    data = load(written, 20, cache_dir)
    train = FaceDataset(data, "train")
    item = train[0]
    i = item["index"]
    assert isinstance(i, int) and i == int(data.splits["train"][0])
    assert item["image"].shape == (3, 20, 20) and item["image"].dtype == torch.float32
    np.testing.assert_allclose(
        item["image"].numpy(), written.images[i].transpose(2, 0, 1) / 255.0, rtol=1e-6
    )
    assert (
        item["parts"].dtype == torch.int64 and item["parts"].tolist() == written.parts[i].tolist()
    )
    assert item["attrs"].tolist() == (written.attrs[i] > 0).astype(float).tolist()
    assert item["factors"].tolist() == pytest.approx([i / 10, -i])
    batch = train.batch([2, 0])
    for key in ("image", "parts", "attrs", "factors"):
        assert batch[key].dtype == train[0][key].dtype
        assert torch.equal(batch[key], torch.stack([train[2][key], train[0][key]]))
    assert batch["index"].tolist() == [train[2]["index"], train[0]["index"]]
    raw = train.batch(np.array([0]), uint8=True)["image"]
    assert (
        raw.dtype == torch.uint8
        and raw.is_contiguous()
        and raw[0].tolist() == (item["image"] * 255).round().to(torch.uint8).tolist()
    )
    labels = train.batch([2, 0], uint8=True)["parts"]  # uint8 labels: 8x less to copy
    assert labels.dtype == torch.uint8 and torch.equal(labels.long(), batch["parts"])
    only = train.batch([2, 0], keys=("attrs",))  # the other optional fields are not read
    assert set(only) == {"image", "index", "attrs"}
    assert torch.equal(only["attrs"], batch["attrs"])
    with pytest.raises(InputError, match="positions"):
        train.batch([len(train)])
    assert len(FaceDataset(data, "train", limit=2)) == 2
    assert len(FaceDataset(data, "all")) == 10
    with pytest.raises(InputError, match="unknown split"):
        FaceDataset(data, "validation")


def test_binary_mask_is_every_part_but_skin(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celebamask_hq(n=3)
    data = load(written, 20, cache_dir)
    item = FaceDataset(data, "all", binary_mask=True)[1]
    expected = (written.parts[1] >= 2).astype(
        np.int64
    )  # nose, hair, cloth -> 1; skin, background -> 0
    assert item["parts"].tolist() == expected.tolist()
    assert 0 < expected.sum() < expected.size


def test_binary_mask_needs_masks(make_data: Any, cache_dir: Path) -> None:
    data = load(make_data.folder(), 20, cache_dir)
    with pytest.raises(DataError, match="binary_mask needs part masks"):
        FaceDataset(data, binary_mask=True)


def test_seeded_splits_are_reproducible_disjoint_and_complete() -> None:
    a = make_splits(100, seed=3, val_fraction=0.1, test_fraction=0.2)
    b = make_splits(100, seed=3, val_fraction=0.1, test_fraction=0.2)
    c = make_splits(100, seed=4, val_fraction=0.1, test_fraction=0.2)
    assert {k: len(v) for k, v in a.items()} == {"train": 70, "val": 10, "test": 20}
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])
    merged = np.concatenate([a["train"], a["val"], a["test"]])
    assert sorted(merged.tolist()) == list(range(100))
    assert {k: len(v) for k, v in make_splits(5).items()} == {"train": 3, "val": 1, "test": 1}
    with pytest.raises(InputError, match="leave images for training"):
        make_splits(10, val_fraction=0.5, test_fraction=0.5)


def test_official_partition_split() -> None:
    splits = make_splits(5, partition=np.array([2, 0, 1, 0, 2], np.int8))
    assert {k: v.tolist() for k, v in splits.items()} == {
        "train": [1, 3],
        "val": [2],
        "test": [0, 4],
    }


# ----------------------------------------------------------------------------- bad input


def _only_locks_in(cache_dir: Path) -> bool:
    return not cache_dir.exists() or all(p.name.endswith(".lock") for p in cache_dir.iterdir())


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really an image")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_missing_folder_file_path_and_empty_folder(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist.*'synth'"):
        load_face_data(tmp_path / "nope", 16, cache_dir=cache_dir)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        load_face_data(tmp_path / "file.txt", 16, cache_dir=cache_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_face_data(tmp_path / "empty", 16, cache_dir=cache_dir)
    (tmp_path / "CelebA-HQ-img").mkdir()
    with pytest.raises(DataError, match="no images in .*CelebA-HQ-img"):
        load_face_data(tmp_path, 16, cache_dir=cache_dir)
    assert _only_locks_in(cache_dir)


def test_unknown_layout_says_what_is_accepted_and_what_was_found(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "CelebAMask-HQ-mask-anno").mkdir()
    with pytest.raises(DataError) as err:
        detect_layout(tmp_path)
    message = str(err.value)
    assert (
        "unknown dataset layout" in message
        and "notes.txt" in message
        and "CelebAMask-HQ-mask-anno" in message
    )
    assert "CelebA-HQ-img/" in message and "img_align_celeba/" in message and "images/" in message
    assert "\n" not in message


@pytest.mark.parametrize("damage", [_corrupt, _truncate])
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_corrupt_or_truncated_image(
    make_data: Any, cache_dir: Path, damage: object, ext: str
) -> None:
    written = make_data.celebamask_hq(n=4, size=(40, 40), ext=ext)
    bad = written.root / "CelebA-HQ-img" / f"2{ext}"
    damage(bad)  # type: ignore[operator]
    with pytest.raises(
        DataError, match=rf"{bad}: (corrupt or truncated|not a readable) image.*skip_bad=True"
    ):
        load(written, 16, cache_dir)
    assert _only_locks_in(cache_dir)  # nothing half-written


def test_mask_aspect_ratio_differs_from_its_image(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celebamask_hq(n=2, size=(20, 20))
    bad = written.root / "CelebAMask-HQ-mask-anno" / "0" / "00001_skin.png"
    save_image(bad, np.zeros((30, 20), np.uint8))
    with pytest.raises(DataError, match=rf"{bad}: mask size differs from its image"):
        load(written, 16, cache_dir)


def test_paired_mask_size_differs(make_data: Any, cache_dir: Path) -> None:
    written = make_data.paired(n=2)
    bad = written.root / "masks" / "face_b.png"
    save_image(bad, np.zeros((10, 10), np.uint8))  # same aspect, other size: wrong for pairs
    with pytest.raises(
        DataError, match=rf"{bad}: mask size differs from its image: mask 10x10, image 20x20"
    ):
        load(written, 16, cache_dir)


def test_mask_value_above_18(make_data: Any, cache_dir: Path) -> None:
    written = make_data.paired(n=2, mask_mode="L")
    bad = written.root / "masks" / "face_a.png"
    label = written.parts[0].copy()
    label[0, 0] = 19
    save_image(bad, label)
    with pytest.raises(DataError, match=rf"{bad}: mask value 19 is not a class id \(0..18\)"):
        load(written, 16, cache_dir)


def test_colour_mask_is_refused(make_data: Any, cache_dir: Path) -> None:
    written = make_data.paired(n=2)
    bad = written.root / "masks" / "face_a.png"
    save_image(bad, np.dstack([written.parts[0], written.parts[0] * 2, written.parts[0]]))
    with pytest.raises(DataError, match="mask is a colour"):
        load(written, 16, cache_dir)


def _attr_lines(written: Any) -> list[str]:
    return (written.root / "list_attr_celeba.txt").read_text().splitlines()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda ls: ls[:3] + [ls[3].rsplit(" ", 1)[0]] + ls[4:],
            r"line 4 \('000002.jpg'\) has 39 values, expected 40",
        ),
        (
            lambda ls: [ls[0], ls[1].replace("Smiling", "Smiles")] + ls[2:],
            "unknown attribute name 'Smiles'",
        ),
        (lambda ls: ls[:3] + [ls[3][:-2] + " x"] + ls[4:], r"value 'x' is not a number"),
        (
            lambda ls: ls[:3] + [ls[3][:-2] + " 0"] + ls[4:],
            r"line 4 \('000002.jpg'\): value 0 is not -1 or 1",
        ),
        (lambda ls: ls + [ls[2]], r"image '000001.jpg' is listed twice"),
        (
            lambda ls: [ls[0], " ".join(ls[1].split()[:39])] + ls[2:],
            "line 2 has 39 attribute names",
        ),
        (lambda ls: ["six"] + ls[1:], "line 1 must be the number of images"),
    ],
)
def test_bad_attribute_file(make_data: Any, cache_dir: Path, edit: object, message: str) -> None:
    written = make_data.celeba(n=6)
    path = written.root / "list_attr_celeba.txt"
    path.write_text("\n".join(edit(_attr_lines(written))) + "\n")  # type: ignore[operator]
    with pytest.raises(DataError, match=message) as err:
        load(written, 16, cache_dir)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert _only_locks_in(cache_dir)


def test_image_without_attribute_row(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celeba(n=6)
    lines = _attr_lines(written)  # the last row removed, and line 1 counts 5 rows (a cut
    # file whose count does not match is tested in test_layouts.py)
    (written.root / "list_attr_celeba.txt").write_text("\n".join(["5", *lines[1:-1]]) + "\n")
    with pytest.raises(DataError, match="000006.jpg: has no row in the attribute file"):
        load(written, 16, cache_dir)


def test_bad_partition_value(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celeba(n=6, partition=(0, 0, 0, 1, 1, 3))
    with pytest.raises(DataError, match=r"list_eval_partition.txt: line 6 is '000006.jpg 3'"):
        load(written, 16, cache_dir)


def test_duplicate_names(make_data: Any, cache_dir: Path) -> None:
    written = make_data.paired(n=2)
    save_image(written.root / "images" / "face_a.jpg", written.images[0])
    with pytest.raises(DataError, match="duplicate name: 'face_a.jpg' and 'face_a.png'"):
        load(written, 16, cache_dir)


def test_image_without_part_masks(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celebamask_hq(n=3)
    for mask in (written.root / "CelebAMask-HQ-mask-anno" / "0").glob("00002_*.png"):
        mask.unlink()
    with pytest.raises(DataError, match=r"2.png: has no part masks .*0/00002_skin.png"):
        load(written, 16, cache_dir)
    assert load(written, 16, cache_dir, skip_bad=True).names == ["0.png", "1.png"]


def test_unknown_part_mask_name(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celebamask_hq(n=2)
    save_image(
        written.root / "CelebAMask-HQ-mask-anno" / "0" / "00001_beard.png",
        np.zeros((20, 20), np.uint8),
    )
    with pytest.raises(DataError, match="00001_beard.png: unknown part 'beard'"):
        load(written, 16, cache_dir)


def test_skip_bad_skips_and_reports(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celeba(n=6)
    _corrupt(written.root / "img_align_celeba" / "000002.jpg")
    lines = _attr_lines(written)
    lines[6] = lines[6][:-2] + " 5"  # 000005.jpg gets a value of 5
    (written.root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError):
        load(written, 16, cache_dir)
    data = load(written, 16, cache_dir, skip_bad=True)
    assert data.names == ["000001.jpg", "000003.jpg", "000004.jpg", "000006.jpg"]
    np.testing.assert_array_equal(data.attrs, (written.attrs[[0, 2, 3, 5]] > 0).astype(np.int8))
    assert {k: v.tolist() for k, v in data.splits.items()} == {
        "train": [0, 1],
        "val": [2],
        "test": [3],
    }
    reasons = {Path(s.path).name: s.reason for s in data.skipped}
    assert set(reasons) == {"000002.jpg", "000005.jpg"}
    assert (
        "not a readable image" in reasons["000002.jpg"]
        and "value 5 is not -1 or 1" in reasons["000005.jpg"]
    )
    again = load(written, 16, cache_dir, skip_bad=True)  # from the cache: still reported
    assert again.skipped == data.skipped


def test_invalid_size(make_data: Any, cache_dir: Path) -> None:
    with pytest.raises(InputError, match="image size"):
        load(make_data.folder(), 0, cache_dir)
