"""Shared fixtures: tiny datasets written in every layout the loaders read.

``make_data`` writes small datasets under the test's tmp folder and returns what it wrote
(:class:`Written`: the exact pixels, label maps and attributes), so that tests compare
loaded arrays with known values. ``synth_dir`` is 200 synthetic faces at 64 px, written
once per session. Every test session gets its own cache folder ($LATENTCAM_CACHE), so no
test writes to ~/.cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from latentcam.data.classes import ATTRIBUTE_NAMES, PART_NAMES


class Written(NamedTuple):
    """A dataset written by ``make_data``, items in file-name order.

    images: per item, (H, W, 3) uint8 as written (JPEG files decode approximately to it).
    parts: (N, H, W) uint8 expected label maps at the image size, or None.
    attrs: (N, 40) int8 in {-1, 1}, or None.
    """

    root: Path
    names: list[str]
    images: list[np.ndarray]
    parts: np.ndarray | None
    attrs: np.ndarray | None


def save_image(path: Path, pixels: np.ndarray) -> Path:
    """Write uint8 (H, W, 3) or (H, W) pixels; the format follows the file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(pixels).save(path, **options)
    return path


def write_attr_file(
    path: Path,
    names: Sequence[str],
    rows: Sequence[Sequence[int]],
    header: Sequence[str] = ATTRIBUTE_NAMES,
) -> Path:
    """A CelebA attribute file: count, names, then ``name v1 .. v40`` (CelebA's double spaces)."""
    lines = [str(len(names)), " ".join(header)]
    lines += [
        f"{name}  " + " ".join(f"{int(v):2d}" for v in row)
        for name, row in zip(names, rows, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def random_attrs(n: int, seed: int = 0) -> np.ndarray:
    return np.where(
        np.random.default_rng(seed).random((n, len(ATTRIBUTE_NAMES))) < 0.3, 1, -1
    ).astype(np.int8)


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


#: Class ids drawn by :func:`face_parts`, in painting order (later ids win).
TOY_PARTS = (
    PART_NAMES.index("skin"),
    PART_NAMES.index("nose"),
    PART_NAMES.index("hair"),
    PART_NAMES.index("cloth"),
)


def part_box(height: int, width: int, class_id: int, shift: int = 0) -> np.ndarray:
    """One toy part's full region (before later parts cover it), bool (H, W)."""
    box = np.zeros((height, width), dtype=bool)
    if class_id == PART_NAMES.index("skin"):
        box[height // 5 : 3 * height // 4, width // 4 : 3 * width // 4] = True
    elif class_id == PART_NAMES.index("nose"):
        box[height // 2 - 2 : height // 2 + 2, width // 2 - 2 + shift : width // 2 + 2 + shift] = (
            True
        )
    elif class_id == PART_NAMES.index("hair"):  # overlaps the top rows of the skin box
        box[: height // 4, :] = True
    elif class_id == PART_NAMES.index("cloth"):
        box[-2:, :] = True
    return box


def face_parts(height: int, width: int, shift: int = 0) -> np.ndarray:
    """A toy label map: skin, a nose on it, hair covering the top of the skin, cloth."""
    parts = np.zeros((height, width), dtype=np.uint8)
    for class_id in TOY_PARTS:
        parts[part_box(height, width, class_id, shift)] = class_id
    return parts


class DataWriter:
    """Writes tiny datasets under one folder; each call makes a new sub-folder.

    The file helpers are reachable from tests as ``make_data.save_image`` etc.
    """

    save_image = staticmethod(save_image)
    write_attr_file = staticmethod(write_attr_file)
    face_parts = staticmethod(face_parts)

    def __init__(self, base: Path) -> None:
        self.base = base
        self.count = 0

    def _root(self, name: str) -> Path:
        self.count += 1
        root = self.base / f"{name}{self.count}"
        root.mkdir(parents=True)
        return root

    def celebamask_hq(
        self,
        n: int = 4,
        size: tuple[int, int] = (20, 20),
        mask_size: tuple[int, int] | None = None,
        ext: str = ".png",
        attrs: bool = True,
        masks: bool = True,
        factors: bool = False,
    ) -> Written:
        """CelebAMask-HQ layout; ``size`` and ``mask_size`` are (width, height)."""
        root = self._root("celebamask_hq")
        width, height = size
        mw, mh = mask_size or size
        images, parts, names = [], [], []
        for i in range(n):
            name = f"{i}{ext}"
            images.append(random_image(height, width, seed=i))
            save_image(root / "CelebA-HQ-img" / name, images[-1])
            names.append(name)
            parts.append(face_parts(height, width, shift=i % 3))
            if masks:
                for class_id in TOY_PARTS:  # each binary mask holds the part's full box
                    part_file = (
                        root
                        / "CelebAMask-HQ-mask-anno"
                        / str(i // 2000)
                        / f"{i:05d}_{PART_NAMES[class_id]}.png"
                    )
                    save_image(
                        part_file,
                        np.where(part_box(mh, mw, class_id, i % 3), 255, 0).astype(np.uint8),
                    )
        values = random_attrs(n)
        if attrs:
            write_attr_file(
                root / "CelebAMask-HQ-attribute-anno.txt", [f"{i}.jpg" for i in range(n)], values
            )
        if factors:
            lines = ["image,smile,yaw"] + [f"{i}.jpg,{i / 10:.2f},{-i:.1f}" for i in range(n)]
            (root / "synthetic-factors.csv").write_text("\n".join(lines) + "\n")
        return Written(
            root, names, images, np.stack(parts) if masks else None, values if attrs else None
        )

    def celeba(
        self,
        n: int = 6,
        size: tuple[int, int] = (24, 32),
        partition: Sequence[int] | None = (0, 0, 0, 1, 1, 2),
        attrs: bool = True,
        ext: str = ".jpg",
    ) -> Written:
        """CelebA layout (000001.jpg, ...); ``size`` is (width, height)."""
        root = self._root("celeba")
        width, height = size
        names = [f"{i + 1:06d}{ext}" for i in range(n)]
        images = [random_image(height, width, seed=100 + i) for i in range(n)]
        for name, pixels in zip(names, images, strict=True):
            save_image(root / "img_align_celeba" / name, pixels)
        values = random_attrs(n, seed=1)
        if attrs:
            write_attr_file(root / "list_attr_celeba.txt", names, values)
        if partition is not None:
            (root / "list_eval_partition.txt").write_text(
                "".join(f"{name} {p}\n" for name, p in zip(names, partition, strict=True))
            )
        return Written(root, names, images, None, values if attrs else None)

    def paired(
        self,
        n: int = 4,
        size: tuple[int, int] = (20, 20),
        mask_mode: str = "P",
        attrs: bool = False,
        attr_name: str = "attributes.txt",
        ext: str = ".png",
    ) -> Written:
        """Paired folders images/NAME and masks/NAME.png (class ids, palette or grey)."""
        root = self._root("paired")
        width, height = size
        names = [f"face_{chr(97 + i)}{ext}" for i in range(n)]
        images = [random_image(height, width, seed=200 + i) for i in range(n)]
        parts = np.stack([face_parts(height, width, shift=i % 3) for i in range(n)])
        (root / "masks").mkdir()
        for name, pixels, label in zip(names, images, parts, strict=True):
            save_image(root / "images" / name, pixels)
            if mask_mode == "P":  # palette indices are the class ids; the colours are arbitrary
                mask = Image.frombytes("P", (width, height), label.tobytes())
                mask.putpalette(
                    [v for c in range(256) for v in (c * 13 % 256, c * 7 % 256, c * 3 % 256)]
                )
            else:
                mask = Image.fromarray(label)
            mask.save(root / "masks" / (name.rsplit(".", 1)[0] + ".png"))
        values = random_attrs(n, seed=2)
        if attrs:
            write_attr_file(root / attr_name, names, values)
        return Written(root, names, images, parts, values if attrs else None)

    def folder(self, sizes: Sequence[tuple[int, int]] = ((20, 20), (24, 32), (32, 24))) -> Written:
        """A plain folder of PNG images of the given (width, height) sizes."""
        root = self._root("folder")
        names = [f"img{i}.png" for i in range(len(sizes))]
        images = [random_image(h, w, seed=300 + i) for i, (w, h) in enumerate(sizes)]
        for name, pixels in zip(names, images, strict=True):
            save_image(root / name, pixels)
        return Written(root, names, images, None, None)


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point $LATENTCAM_CACHE at a per-session folder: tests never touch ~/.cache."""
    folder = tmp_path_factory.mktemp("latentcam-cache")
    old = os.environ.get("LATENTCAM_CACHE")
    os.environ["LATENTCAM_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("LATENTCAM_CACHE", None)
    else:
        os.environ["LATENTCAM_CACHE"] = old


@pytest.fixture
def make_data(tmp_path: Path) -> DataWriter:
    """Writer of tiny datasets in every layout (see :class:`DataWriter`)."""
    return DataWriter(tmp_path / "datasets")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A fresh, empty cache folder for one test."""
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 synthetic faces at 64 px (CelebAMask-HQ layout), written once per session."""
    synthetic = pytest.importorskip("latentcam.data.synthetic")
    out = tmp_path_factory.mktemp("synth") / "faces"
    return synthetic.write_synthetic(out, n=200, size=64, seed=0, progress=False)


#: The tiny runs shared by the run-level tests: one per model kind.
TINY_RUN_KINDS: dict[str, list[str]] = {
    "vae": [],
    "cvae": ["model.kind=cvae"],
    "segvae": ["model.kind=segvae", "model.seg_classes=19", "data.target=parts"],
}


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory, _session_cache: Path) -> dict[str, Path]:
    """One finished tiny run per model kind (the ``tiny`` recipe, 96 synthetic faces),
    trained once per test session (per xdist worker) and shared by the run-level tests."""
    from latentcam.config import load_config
    from latentcam.training.train import train

    base = tmp_path_factory.mktemp("tiny-runs")
    out = {}
    for name, overrides in TINY_RUN_KINDS.items():
        cfg = load_config(
            ["tiny"], [f"data.cache_dir={_session_cache}", "data.synth_n=96", *overrides]
        )
        out[name] = train(cfg, base / name, progress=False).run_dir
    return out
