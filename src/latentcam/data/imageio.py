"""Decode one dataset item: an image, its class-id mask or its per-part binary masks.

Everything here works on one file at a time and returns uint8 NumPy arrays at the
chosen square size S, ready to be stored in the cache (:mod:`latentcam.data.cache`):

- images are decoded fully (``Image.load()``, so a truncated file is caught), turned upright
  by their EXIF orientation, converted to RGB, centre-cropped to a square and resized with
  antialiasing (Lanczos);
- masks get the same centre crop and a nearest-neighbour resize, so only valid class ids
  survive. A CelebAMask-HQ image has one binary PNG per present part; they are assembled
  into one 19-class label map where later ids win (Lee et al., CVPR 2020, ``g_mask.py``).

This module imports no torch, so that decoding worker processes start quickly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from latentcam.data.classes import NUM_CLASSES
from latentcam.errors import DataError

#: Image file endings the loaders read (lower case; matching ignores case).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: Colour behind transparent pixels when an image has an alpha channel.
ALPHA_BACKGROUND = (255, 255, 255)

_SKIP_HINT = "replace or delete it, or skip bad files with skip_bad=True (--skip-bad)"


class BadFile(DataError):
    """One file of a dataset cannot be used; with ``skip_bad`` it is skipped instead.

    Attributes:
        path: the offending file.
        reason: what is wrong with it (without the advice).
    """

    def __init__(self, path: str | Path, reason: str, hint: str = _SKIP_HINT) -> None:
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        super().__init__(f"{path}: {reason}; {hint}")

    def __reduce__(self) -> tuple[type[BadFile], tuple[str, str, str]]:  # crosses processes
        return (BadFile, (self.path, self.reason, self.hint))

    def skipped(self) -> Skipped:
        """This error as a :class:`Skipped` entry."""
        return Skipped(self.path, self.reason)


class Skipped(NamedTuple):
    """A file left out by ``skip_bad=True``, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Record:
    """Where one dataset item lives on disk.

    Attributes:
        name: the image's file name, e.g. ``"0.jpg"`` (unique within the dataset).
        image: path of the image file.
        mask: a class-id mask (paired folders): palette or grey PNG with values 0..18.
        part_masks: CelebAMask-HQ binary masks as ``(class id, path)``, ascending ids.
        has_parts: whether the item gets a label map (a CelebAMask-HQ image without any
            part file is all background).
    """

    name: str
    image: Path
    mask: Path | None = None
    part_masks: tuple[tuple[int, Path], ...] = field(default=())
    has_parts: bool = False


class DecodedItem(NamedTuple):
    """One item decoded at size S.

    Attributes:
        image: (S, S, 3) uint8 RGB.
        parts: (S, S) uint8 class ids in 0..18, or None when the item has no mask.
        native_size: the image file's (width, height) before cropping and resizing.
    """

    image: np.ndarray
    parts: np.ndarray | None
    native_size: tuple[int, int]


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` ends with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def center_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred square (left, top, right, bottom) of a width x height picture, in pixels."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


def nearest_indices(width: int, height: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source rows and columns that a nearest-neighbour resize of the centre square picks.

    Returns:
        rows, cols: int64 arrays of length ``size``; ``array[np.ix_(rows, cols)]`` is the
        centre-cropped array resized to (size, size) without creating new values.
    """
    left, top, right, _ = center_box(width, height)
    step = (right - left) / size
    centres = (np.arange(size) + 0.5) * step
    cols = np.minimum(np.floor(left + centres).astype(np.int64), width - 1)
    rows = np.minimum(np.floor(top + centres).astype(np.int64), height - 1)
    return rows, cols


#: The EXIF tag that says how a photo is turned (1 upright; 2..8 mirrored and/or turned).
ORIENTATION_TAG = 0x0112


def open_image(path: str | Path, draft_size: int = 0) -> tuple[Image.Image, tuple[int, int]]:
    """Open and fully decode an image file, upright: an EXIF orientation (a phone's photo
    stored turned) is applied (``ImageOps.exif_transpose``), as every viewer shows it.

    Args:
        path: image file.
        draft_size: if > 0 and the file is a JPEG, let the decoder scale it down (DCT
            scaling, a factor of 2, 4 or 8) while keeping the short side >= draft_size.

    Returns:
        The decoded PIL image and the file's native (width, height), both upright.

    Raises:
        BadFile: the file is missing, not an image, corrupt or truncated.
    """
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise BadFile(path, "file not found", "check the dataset folder") from None
    except Image.DecompressionBombError as err:  # the header alone declares too many pixels
        raise BadFile(path, f"image too large to decode ({err})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BadFile(path, f"not a readable image ({err})") from None
    try:
        native = (int(im.size[0]), int(im.size[1]))
        if draft_size > 0 and im.format == "JPEG":
            short = min(native)
            scale = draft_size / short
            im.draft(im.mode, (math.ceil(native[0] * scale), math.ceil(native[1] * scale)))
        im.load()  # decode everything: open() alone reads only the header
        orientation = im.getexif().get(ORIENTATION_TAG, 1)
        if orientation != 1:  # a camera's photo, stored turned
            ImageOps.exif_transpose(im, in_place=True)
            if orientation in (5, 6, 7, 8):  # a quarter turn: width and height swap
                native = (native[1], native[0])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        im.close()
        raise BadFile(path, f"corrupt or truncated image ({err})") from None
    if native[0] < 1 or native[1] < 1:
        raise BadFile(path, f"image has size {native[0]}x{native[1]}")
    return im, native


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Transparent pixels (RGBA, LA, PA, P or L with a transparency key) are composited over
    :data:`ALPHA_BACKGROUND`; 16-bit grey (I;16*) is scaled by 1/257; 32-bit ``I`` is
    scaled the same way when it exceeds 255; float ``F`` in [0, 1] is scaled by 255,
    otherwise clipped to [0, 255]. Everything else uses PIL's own conversion.
    """
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        values = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return im.convert("RGB")


def load_image(path: str | Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image, centre-crop it to a square and resize it to ``size``.

    Returns:
        (S, S, 3) uint8 RGB array, and the file's native (width, height).

    Raises:
        BadFile: the file is not a readable image.
    """
    im, native = open_image(path, draft_size=size)
    with im:
        rgb = to_rgb(im)
        if rgb.width != rgb.height:
            rgb = rgb.crop(center_box(*rgb.size))
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return np.asarray(rgb, dtype=np.uint8).copy(), native


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two (width, height) pairs have the same aspect ratio within 1%."""
    return abs(a[0] * b[1] - a[1] * b[0]) <= 0.01 * a[1] * b[1] * max(a[0] / a[1], b[0] / b[1])


def _mask_array(path: Path) -> np.ndarray:
    """Decode a mask PNG to a 2-D integer array of its stored values (no colour mixing)."""
    im, _ = open_image(path)
    with im:
        mode = im.mode
        values = np.asarray(im)
    if values.ndim == 3:  # RGB(A)/LA masks: accept only when the colour channels agree
        colour = values[..., :3] if values.shape[-1] >= 3 else values[..., :1]
        if not (colour == colour[..., :1]).all():
            raise BadFile(
                path,
                f"mask is a colour ({mode}) image; masks must hold class ids as a palette (P) "
                "or grey (L) PNG",
                "convert it to a grey or palette PNG whose values are the class ids",
            )
        values = colour[..., 0]
    return values


def load_label_map(path: str | Path, size: int, image_size: tuple[int, int]) -> np.ndarray:
    """Read a class-id mask of a paired folder and resize it like its image.

    Args:
        path: palette (P) or grey (L) PNG whose pixel values are class ids 0..18.
        size: output side S.
        image_size: the (width, height) of the mask's image; the mask must match it.

    Returns:
        (S, S) uint8 class ids (nearest-neighbour resize after the image's centre crop).

    Raises:
        BadFile: unreadable mask, a size different from its image, or a value above 18.
    """
    path = Path(path)
    values = _mask_array(path)
    height, width = values.shape
    if (width, height) != tuple(image_size):
        raise BadFile(
            path,
            f"mask size differs from its image: mask {width}x{height}, image "
            f"{image_size[0]}x{image_size[1]}",
            "make the mask the same size as its image",
        )
    top = int(values.max(initial=0))
    if top >= NUM_CLASSES or int(values.min(initial=0)) < 0:
        bad = top if top >= NUM_CLASSES else int(values.min())
        raise BadFile(
            path,
            f"mask value {bad} is not a class id (0..{NUM_CLASSES - 1})",
            "write the CelebAMask-HQ class ids 0..18 into the mask",
        )
    rows, cols = nearest_indices(width, height, size)
    return values[np.ix_(rows, cols)].astype(np.uint8)


def assemble_part_masks(
    part_masks: tuple[tuple[int, Path], ...], size: int, image_size: tuple[int, int]
) -> np.ndarray:
    """Assemble CelebAMask-HQ's per-part binary PNGs into one label map at size S.

    Every nonzero pixel of part ``c``'s mask gets class ``c``; parts are painted in
    ascending id order, so later ids win where parts overlap (as in the official
    ``g_mask.py``). Masks may be smaller than their image (512 vs 1024 px in the real
    data) as long as the aspect ratio agrees; they get the image's centre crop and a
    nearest-neighbour resize.

    Returns:
        (S, S) uint8 class ids in 0..18 (0 where no part is present).

    Raises:
        BadFile: an unreadable mask, or one whose aspect ratio differs from its image's.
    """
    label = np.zeros((size, size), dtype=np.uint8)
    shape: tuple[int, int] | None = None
    first = Path()
    index: tuple[np.ndarray, ...] = ()
    for class_id, path in sorted(part_masks, key=lambda item: item[0]):
        im, (width, height) = open_image(path)
        with im:
            values = np.asarray(im)
        if (
            values.ndim == 3
        ):  # colour or grey+alpha: a pixel belongs to the part if any colour is set
            values = np.asarray(
                values[..., :3].any(axis=-1) if values.shape[-1] >= 3 else values[..., 0]
            )
        if not _same_aspect((width, height), image_size):
            raise BadFile(
                path,
                f"mask size differs from its image: mask {width}x{height} does not have the "
                f"aspect ratio of image {image_size[0]}x{image_size[1]}",
                "regenerate the mask at its image's aspect ratio",
            )
        if shape is None:
            shape, first = (width, height), path
            index = np.ix_(*nearest_indices(width, height, size))
        elif (width, height) != shape:
            raise BadFile(  # name both: either one may be the odd one out
                path,
                f"mask is {width}x{height} but {first}, a mask of the same image, is "
                f"{shape[0]}x{shape[1]}",
                "give every part mask of an image the same size",
            )
        label[values[index] != 0] = class_id
    return label


def decode_record(record: Record, size: int) -> DecodedItem:
    """Decode one item (image plus mask, if any) at size S.

    Raises:
        BadFile: any of the item's files is unreadable or inconsistent.
    """
    image, native = load_image(record.image, size)
    parts: np.ndarray | None = None
    if record.mask is not None:
        parts = load_label_map(record.mask, size, native)
    elif record.has_parts:
        parts = assemble_part_masks(record.part_masks, size, native)
    return DecodedItem(image, parts, native)


def decode_or_error(args: tuple[Record, int]) -> DecodedItem | BadFile:
    """:func:`decode_record` for worker processes: a bad file comes back as its error."""
    record, size = args
    try:
        return decode_record(record, size)
    except BadFile as err:
        return err
