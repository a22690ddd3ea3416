"""Images load upright: the EXIF orientation of a photo is applied (issue #20.5).

The stored pixels are known; the expected upright pixels are computed here with NumPy
from the EXIF definition of each orientation (not with PIL's own transposes), and compared
with what :func:`open_image`, :func:`load_image` and the loader return.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentcam.data.dataset import load_face_data
from latentcam.data.imageio import ORIENTATION_TAG, load_image, open_image

#: EXIF orientation -> how to turn the stored rows x cols x 3 array upright (EXIF 2.3,
#: tag 0x0112: where row 0 and column 0 of the stored image lie in the picture).
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # turned 180 degrees
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # row 0 is the left column
    6: lambda a: a[::-1].transpose(1, 0, 2),  # turned 90 degrees: row 0 is the right column
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: a[:, ::-1].transpose(1, 0, 2),  # turned 90 the other way
}


def stored_pixels(height: int = 16, width: int = 32) -> np.ndarray:
    """Four flat quadrants (red, green / blue, white) with a distinct pixel in each corner."""
    pixels = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    pixels[:h, :w] = (220, 30, 30)
    pixels[:h, w:] = (30, 200, 40)
    pixels[h:, :w] = (20, 40, 210)
    pixels[h:, w:] = (250, 250, 250)
    return pixels


def save_turned(path: Path, pixels: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    options = {"quality": 100, "subsampling": 0} if path.suffix == ".jpg" else {}
    Image.fromarray(pixels).save(path, exif=exif, **options)
    return path


def test_the_oracle_is_a_turn_or_a_mirror() -> None:
    a = np.arange(6).reshape(2, 3, 1)  # [[0 1 2] [3 4 5]]
    assert UPRIGHT[6](a)[..., 0].tolist() == [[3, 0], [4, 1], [5, 2]]  # clockwise
    assert UPRIGHT[8](a)[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]  # anticlockwise
    assert UPRIGHT[3](a)[..., 0].tolist() == [[5, 4, 3], [2, 1, 0]]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_with_an_orientation_opens_upright(tmp_path: Path, orientation: int) -> None:
    pixels = stored_pixels()
    path = save_turned(tmp_path / f"o{orientation}.png", pixels, orientation)
    im, native = open_image(path)
    with im:
        upright = np.asarray(im.convert("RGB"))
    expected = UPRIGHT[orientation](pixels)
    np.testing.assert_array_equal(upright, expected)
    assert native == (expected.shape[1], expected.shape[0])  # (width, height), upright


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_jpeg_with_an_orientation_loads_upright(tmp_path: Path, orientation: int) -> None:
    pixels = stored_pixels()
    path = save_turned(tmp_path / f"o{orientation}.jpg", pixels, orientation)
    expected = UPRIGHT[orientation](pixels)
    side = min(expected.shape[:2])  # the centre square at its own size: no resize
    top, left = (expected.shape[0] - side) // 2, (expected.shape[1] - side) // 2
    square = expected[top : top + side, left : left + side].astype(int)
    loaded, native = load_image(path, side)
    assert native == (expected.shape[1], expected.shape[0])
    assert np.abs(loaded.astype(int) - square).mean() < 3  # JPEG: close, not exact
    for row, col in ((2, 2), (2, side - 3), (side - 3, 2), (side - 3, side - 3)):
        np.testing.assert_allclose(loaded[row, col], square[row, col], atol=12)


def test_the_loader_gives_the_upright_face(tmp_path: Path) -> None:
    """Through ``load_face_data`` (folder layout, the cache): a photo stored turned by 90
    degrees comes out as the upright picture's centre square."""
    folder = tmp_path / "faces"
    folder.mkdir()
    pixels = stored_pixels()
    save_turned(folder / "turned.png", pixels, 6)
    Image.fromarray(pixels).save(folder / "plain.png")
    data = load_face_data(folder, 16, cache_dir=tmp_path / "cache", progress=False, workers=0)
    upright = UPRIGHT[6](pixels)  # 32 rows x 16 columns: the centre square is rows 8..23
    np.testing.assert_array_equal(data.images[data.names.index("turned.png")], upright[8:24])
    np.testing.assert_array_equal(data.images[data.names.index("plain.png")], pixels[:, 8:24])
