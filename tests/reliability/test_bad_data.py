"""Bad data against every loader (issue #7.2), property-based.

Each case starts from a tiny dataset written by ``make_data`` (tests/conftest.py) in one of
the four layouts (3 items, 20x20 PNG, so that an untouched item loads bit-exact at
``SIZE = 20``), damages one file, and loads it. The outcome must be one of:

- it loads, and the values are right: shapes, ranges and the pixels, labels or attributes
  computed by hand for the damaged item; every untouched item exactly as written;
- ONE :class:`~latentcam.errors.DataError`, on one line, naming the file. Then, with
  ``skip_bad=True``, the load either skips the damaged item, lists it in
  ``FaceData.skipped`` and keeps every other item exactly, or (when the damage is in a
  file that every item needs: a header, an empty folder) raises the same kind of error.

Any other exception fails the test. Outcomes are counted per kind in :data:`TALLY`; with
``LATENTCAM_RELIABILITY_TALLY=FOLDER`` set they are written there as JSON (one file per
test process) for the table in docs/reliability.md.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from tests.reliability.tally import tally_file

from latentcam.data.classes import ATTRIBUTE_NAMES, PART_NAMES
from latentcam.data.dataset import FaceData, load_face_data
from latentcam.data.layouts import natural_key
from latentcam.errors import DataError

SIZE = 20  # the loaded side: the written images are 20x20, so untouched items load exactly
LAYOUTS = ("celebamask_hq", "celeba", "paired", "folder")
MASKED = ("celebamask_hq", "paired")
LABELLED = ("celebamask_hq", "celeba", "paired")
IMAGE_DIR = {"celebamask_hq": "CelebA-HQ-img", "celeba": "img_align_celeba", "paired": "images"}
ATTR_FILE = {
    "celebamask_hq": "CelebAMask-HQ-attribute-anno.txt",
    "celeba": "list_attr_celeba.txt",
    "paired": "attributes.txt",
}
SKIN, NOSE, HAIR = PART_NAMES.index("skin"), PART_NAMES.index("nose"), PART_NAMES.index("hair")
TOY_PARTS = (SKIN, NOSE, HAIR, PART_NAMES.index("cloth"))  # what make_data draws

#: kind -> outcome -> count, over every case this process tried.
TALLY: defaultdict[str, Counter[str]] = defaultdict(Counter)
LOADED = "loaded, values checked"
ONE_ERROR = "one DataError naming the file"
SKIPPED = "skip_bad: item skipped and reported, others exact"
STILL_ERROR = "skip_bad: still one DataError (a file every item needs)"

#: Examples per property: few in CI; set LATENTCAM_RELIABILITY_EXAMPLES=200 for a long hunt.
SETTINGS = settings(
    max_examples=int(os.environ.get("LATENTCAM_RELIABILITY_EXAMPLES", "6")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_caches = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def _write_tally() -> Iterator[None]:
    yield
    out = tally_file("bad_data", ".json")
    if out is not None:
        out.write_text(json.dumps({k: dict(v) for k, v in sorted(TALLY.items())}, indent=1))


# ----------------------------------------------------------------------------- helpers


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _base(make_data: Any, layout: str) -> Any:
    """3 items of 20x20 PNG in ``layout`` (masks and attributes where the layout has them)."""
    if layout == "celebamask_hq":
        return make_data.celebamask_hq(n=3, size=(SIZE, SIZE))
    if layout == "celeba":
        return make_data.celeba(n=3, size=(SIZE, SIZE), partition=(0, 1, 2), ext=".png")
    if layout == "paired":
        return make_data.paired(n=3, size=(SIZE, SIZE), attrs=True)
    return make_data.folder(sizes=((SIZE, SIZE),) * 3)


def _image_dir(w: Any, layout: str) -> Path:
    return w.root / IMAGE_DIR[layout] if layout in IMAGE_DIR else w.root


def _image_path(w: Any, layout: str, k: int, ext: str | None = None) -> Path:
    """Where item k's image lives (with another extension if ``ext``)."""
    name = w.names[k] if ext is None else _stem(w.names[k]) + ext
    return _image_dir(w, layout) / name


def _replace_image(w: Any, layout: str, k: int, ext: str) -> Path:
    """Delete item k's image file; return the path its replacement (same stem) should take."""
    _image_path(w, layout, k).unlink()
    return _image_path(w, layout, k, ext)


def _mask_paths(w: Any, layout: str, k: int) -> list[Path]:
    if layout == "celebamask_hq":
        folder = w.root / "CelebAMask-HQ-mask-anno" / "0"
        return [folder / f"{k:05d}_{PART_NAMES[c]}.png" for c in TOY_PARTS]
    return [w.root / "masks" / f"{_stem(w.names[k])}.png"]


def _save(path: Path, im: Image.Image, **options: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **options)
    return path


def _load(root: Path, cache: Path, skip_bad: bool = False) -> FaceData:
    return load_face_data(root, SIZE, cache_dir=cache, skip_bad=skip_bad, progress=False, workers=0)


def _fresh_cache(tmp_path: Path) -> Path:
    return tmp_path / f"cache{next(_caches)}"


def _check_untouched(data: FaceData, w: Any, names: list[str]) -> None:
    """Items ``names`` of ``data`` hold exactly what ``make_data`` wrote (by file stem)."""
    stems = [_stem(n) for n in w.names]
    assert data.images.shape[1:] == (SIZE, SIZE, 3) and data.images.dtype == np.uint8
    for name in names:
        i, j = data.names.index(name), stems.index(_stem(name))
        np.testing.assert_array_equal(data.images[i], w.images[j], err_msg=name)
        if w.parts is not None:
            assert data.parts is not None
            np.testing.assert_array_equal(data.parts[i], w.parts[j], err_msg=name)
        if w.attrs is not None:
            assert data.attrs is not None
            np.testing.assert_array_equal(data.attrs[i], (w.attrs[j] > 0).astype(np.int8))


def _names_on_disk(w: Any, layout: str) -> list[str]:
    return sorted(
        (p.name for p in _image_dir(w, layout).iterdir() if p.is_file() and p.suffix != ".txt"),
        key=natural_key,
    )


def verify(
    kind: str,
    tmp_path: Path,
    w: Any,
    layout: str,
    named: tuple[Path | str, ...],
    affected: str | None,
    check_loaded: Callable[[FaceData], None],
) -> str:
    """Load ``w``; check the outcome as the module docstring says; count it under ``kind``.

    Args:
        named: what the error message must name (the damaged file, or files).
        affected: the name of the image whose item ``skip_bad`` should drop (None when
            the damage cannot be skipped item by item).
        check_loaded: checks the values when the load succeeds.

    Returns:
        "loaded" or "error".
    """
    cache = _fresh_cache(tmp_path)
    try:
        data = _load(w.root, cache)
    except DataError as err:
        message = str(err)
        assert "\n" not in message, message
        for thing in named:
            assert str(thing) in message, f"{thing} not named in: {message}"
        if cache.is_dir():  # nothing half-built: at most the lock files
            assert all(p.name.endswith(".lock") for p in cache.iterdir()), list(cache.iterdir())
        TALLY[kind][ONE_ERROR] += 1
        try:
            kept = _load(w.root, cache, skip_bad=True)
        except DataError as again:
            assert affected is None, f"{affected} was not skipped: {again}"
            assert all(str(thing) in str(again) for thing in named)
            TALLY[kind][STILL_ERROR] += 1
            return "error"
        assert affected is not None, f"skip_bad loaded although nothing can be skipped: {named}"
        reported = " ".join(f"{s.path} {s.reason}" for s in kept.skipped)
        assert all(str(thing) in reported for thing in named), reported
        remaining = [n for n in _names_on_disk(w, layout) if n != affected]
        if layout != "folder":  # keyed layouts drop every file of a duplicated stem but one
            assert len(kept.names) == len({_stem(n) for n in remaining})
        assert set(kept.names) <= set(remaining) and len(kept.skipped) >= 1
        _check_untouched(kept, w, [n for n in kept.names if _stem(n) != _stem(affected)])
        TALLY[kind][SKIPPED] += 1
        return "error"
    assert data.images.dtype == np.uint8 and data.images.shape[1:] == (SIZE, SIZE, 3)
    if data.parts is not None:
        assert data.parts.max() < len(PART_NAMES)
    check_loaded(data)
    TALLY[kind][LOADED] += 1
    return "loaded"


def _decoded_by_pil(path: Path) -> np.ndarray:
    """The RGB pixels PIL itself decodes from ``path`` (20x20 files: no crop, no resize)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


layouts = pytest.mark.parametrize("layout", LAYOUTS)


# ----------------------------------------------------------------------------- image files


@layouts
@SETTINGS
@given(blob=st.binary(max_size=600))
@example(blob=b"")
@example(blob=b"\xff\xd8\xff\xe0" + bytes(64))  # a JPEG signature, then nothing useful
def test_random_bytes_named_jpg(make_data: Any, tmp_path: Path, layout: str, blob: bytes) -> None:
    w = _base(make_data, layout)
    bad = _replace_image(w, layout, 1, ".jpg")
    bad.write_bytes(blob)
    verify(
        "random bytes named .jpg (image)",
        tmp_path,
        w,
        layout,
        (bad,),
        bad.name,
        lambda data: pytest.fail(f"{len(blob)} random bytes loaded as an image"),
    )


@pytest.mark.parametrize("layout", MASKED)
@SETTINGS
@given(blob=st.binary(max_size=600))
@example(blob=b"\x89PNG\r\n\x1a\n")  # a PNG signature alone
def test_random_bytes_as_mask(make_data: Any, tmp_path: Path, layout: str, blob: bytes) -> None:
    w = _base(make_data, layout)
    bad = _mask_paths(w, layout, 2)[0]
    bad.write_bytes(blob)
    verify(
        "random bytes named .png (mask)",
        tmp_path,
        w,
        layout,
        (bad,),
        w.names[2],
        lambda data: pytest.fail("random bytes loaded as a mask"),
    )


@layouts
@SETTINGS
@given(fmt=st.sampled_from(["PNG", "JPEG"]), keep=st.floats(0.0, 1.0, exclude_max=True))
@example(fmt="PNG", keep=0.99)  # only the end chunk missing
@example(fmt="JPEG", keep=0.98)  # only the end-of-image marker missing
def test_truncated_png_and_jpeg(
    make_data: Any, tmp_path: Path, layout: str, fmt: str, keep: float
) -> None:
    w = _base(make_data, layout)
    bad = _replace_image(w, layout, 0, ".png" if fmt == "PNG" else ".jpg")
    _save(bad, Image.fromarray(w.images[0]), **({"quality": 95} if fmt == "JPEG" else {}))
    whole = _decoded_by_pil(bad)
    data = bad.read_bytes()
    bad.write_bytes(data[: int(len(data) * keep)])

    def same_as_whole_file(loaded: FaceData) -> None:
        # a file that still decodes must decode to the same pixels as the whole file
        i = loaded.names.index(bad.name)
        np.testing.assert_array_equal(loaded.images[i], whole)
        _check_untouched(loaded, w, [n for n in loaded.names if n != bad.name])

    verify(f"truncated {fmt}", tmp_path, w, layout, (bad,), bad.name, same_as_whole_file)


def _expected_rgb(mode: str, value: tuple[int, ...]) -> tuple[int, int, int]:
    """What a constant pixel of ``mode`` must become (hand-computed; alpha over white)."""
    if mode == "L":
        return (value[0],) * 3  # type: ignore[return-value]
    if mode == "I;16":
        grey = int(np.rint(value[0] / 257))
        return (grey, grey, grey)
    if mode == "P":
        return value[1:4]  # type: ignore[return-value]
    colour, alpha = (value[:1] * 3, value[1]) if mode == "LA" else (value[:3], value[3])
    return tuple(round(c * alpha / 255 + 255 * (1 - alpha / 255)) for c in colour)  # type: ignore[return-value]


def _constant_image(mode: str, value: tuple[int, ...], size: tuple[int, int]) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.full(size[::-1], value[0], np.uint16))
    if mode == "P":
        im = Image.new("P", size, value[0])
        palette = [0] * 768
        palette[3 * value[0] : 3 * value[0] + 3] = value[1:4]
        im.putpalette(palette)
        return im
    return Image.new(mode, size, value if len(value) > 1 else value[0])


_byte = st.integers(0, 255)
_mode_values = st.one_of(
    st.tuples(st.just("L"), st.tuples(_byte)),
    st.tuples(st.just("LA"), st.tuples(_byte, _byte)),
    st.tuples(st.just("RGBA"), st.tuples(_byte, _byte, _byte, _byte)),
    st.tuples(st.just("P"), st.tuples(_byte, _byte, _byte, _byte)),  # index, then its colour
    st.tuples(st.just("I;16"), st.tuples(st.integers(0, 65535))),
)


@layouts
@SETTINGS
@given(mode_value=_mode_values)
@example(mode_value=("LA", (0, 0)))  # fully transparent: the white background
@example(mode_value=("I;16", (65535,)))
def test_image_modes(
    make_data: Any, tmp_path: Path, layout: str, mode_value: tuple[str, tuple[int, ...]]
) -> None:
    mode, value = mode_value
    w = _base(make_data, layout)
    path = _replace_image(w, layout, 1, ".png")
    _save(path, _constant_image(mode, value, (SIZE, SIZE)))
    expected = _expected_rgb(mode, value)

    def is_the_colour(data: FaceData) -> None:
        pixels = data.images[data.names.index(path.name)].astype(int)
        assert np.abs(pixels - np.array(expected)).max() <= 1, (mode, value, pixels[0, 0])
        _check_untouched(data, w, [n for n in data.names if n != path.name])

    verify(f"image mode {mode}", tmp_path, w, layout, (path,), path.name, is_the_colour)


def _write_centred(
    w: Any, layout: str, k: int, size: tuple[int, int], inside: int, outside: int, fmt: str = "PNG"
) -> Path:
    """Item k becomes a width x height image: its centred square grey ``inside``, the rest
    ``outside``; its masks mark the square as nose and the rest as hair."""
    width, height = size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = np.zeros((height, width), bool)
    square[top : top + side, left : left + side] = True
    path = _replace_image(w, layout, k, ".png" if fmt == "PNG" else ".jpg")
    grey = np.where(square, inside, outside).astype(np.uint8)
    _save(
        path, Image.fromarray(np.dstack([grey] * 3)), **({"quality": 95} if fmt == "JPEG" else {})
    )
    if layout == "paired":
        label = np.where(square, NOSE, HAIR).astype(np.uint8)
        _save(_mask_paths(w, layout, k)[0], Image.fromarray(label))
    elif layout == "celebamask_hq":
        for mask in _mask_paths(w, layout, k):
            mask.unlink()
        folder = w.root / "CelebAMask-HQ-mask-anno" / "0"
        _save(folder / f"{k:05d}_nose.png", Image.fromarray((square * 255).astype(np.uint8)))
        _save(folder / f"{k:05d}_hair.png", Image.fromarray((~square * 255).astype(np.uint8)))
    return path


def _centre_check(w: Any, path: Path, inside: int, tolerance: int) -> Callable[[FaceData], None]:
    def check(data: FaceData) -> None:
        i = data.names.index(path.name)
        assert np.abs(data.images[i].astype(int) - inside).max() <= tolerance
        if data.parts is not None:  # the mask got the image's crop: all nose
            assert (data.parts[i] == NOSE).all()
        _check_untouched(data, w, [n for n in data.names if n != path.name])

    return check


@layouts
@SETTINGS
@given(width=st.integers(1, 64), height=st.integers(1, 64), inside=_byte, outside=_byte)
@example(width=1, height=1, inside=200, outside=0)
@example(width=1, height=41, inside=9, outside=250)
@example(width=57, height=2, inside=130, outside=5)
def test_tiny_and_non_square_images_are_centre_cropped(
    make_data: Any, tmp_path: Path, layout: str, width: int, height: int, inside: int, outside: int
) -> None:
    w = _base(make_data, layout)
    path = _write_centred(w, layout, 0, (width, height), inside, outside)
    kind = "1x1 image" if width == height == 1 else "non-square or small image"
    outcome = verify(
        kind, tmp_path, w, layout, (path,), path.name, _centre_check(w, path, inside, 1)
    )
    assert outcome == "loaded"


@pytest.mark.parametrize(
    ("layout", "fmt", "size"),
    [
        ("folder", "PNG", (5000, 5000)),
        ("paired", "PNG", (5000, 3000)),
        ("celeba", "JPEG", (3000, 5000)),
    ],
)
def test_very_large_images(
    make_data: Any, tmp_path: Path, layout: str, fmt: str, size: tuple[int, int]
) -> None:
    w = _base(make_data, layout)
    path = _write_centred(w, layout, 2, size, inside=180, outside=20, fmt=fmt)
    check = _centre_check(w, path, 180, 1 if fmt == "PNG" else 3)
    assert verify(
        "very large image (15-25 Mpx)", tmp_path, w, layout, (path,), path.name, check
    ) == ("loaded")


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height RGB pixels and holds almost none of them."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


@layouts
def test_decompression_bomb_header(make_data: Any, tmp_path: Path, layout: str) -> None:
    w = _base(make_data, layout)
    bad = _png_header_only(_replace_image(w, layout, 1, ".png"), 40000, 40000)  # 1.6 Gpx
    verify(
        "PNG declaring 40000x40000 px (decompression bomb)",
        tmp_path,
        w,
        layout,
        (bad,),
        bad.name,
        lambda data: pytest.fail("a 1.6 Gpx image was decoded"),
    )


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("layout", MASKED)
@SETTINGS
@given(mw=st.integers(1, 40), mh=st.integers(1, 40), which=st.sampled_from(["all", "one"]))
@example(mw=10, mh=10, which="all")  # half size, same aspect: fine for CelebAMask-HQ
@example(mw=10, mh=10, which="one")  # one part mask smaller than the others of its image
@example(mw=SIZE, mh=SIZE + 1, which="one")
def test_mismatched_mask_sizes(
    make_data: Any, tmp_path: Path, layout: str, mw: int, mh: int, which: str
) -> None:
    w = _base(make_data, layout)
    label = np.asarray(Image.fromarray(w.parts[1]).resize((mw, mh), Image.Resampling.NEAREST))
    masks = _mask_paths(w, layout, 1)
    if layout == "paired" or which == "one":
        masks = masks[:1]  # CelebAMask-HQ: the skin mask only
    for mask in masks:
        if layout == "paired":
            _save(mask, Image.fromarray(label))
        else:  # where a part won in the label map is the part's mask: the same label back
            part = PART_NAMES.index(_stem(mask.name).split("_", 1)[1])
            _save(mask, Image.fromarray(np.where(label == part, 255, 0).astype(np.uint8)))

    def check(data: FaceData) -> None:
        assert data.parts is not None
        i = data.names.index(w.names[1])
        assert set(np.unique(data.parts[i])) <= {0, *TOY_PARTS}
        if (mw, mh) == (SIZE, SIZE):
            np.testing.assert_array_equal(data.parts[i], w.parts[1])
        _check_untouched(data, w, [w.names[0], w.names[2]])

    kind = f"mask size differs from its image ({layout})"
    outcome = verify(kind, tmp_path, w, layout, (masks[0],), w.names[1], check)
    if layout == "paired" or which == "one":  # a mask must have its image's (or twins') size
        assert (outcome == "loaded") == ((mw, mh) == (SIZE, SIZE))
    else:  # CelebAMask-HQ masks may be smaller than the image, at its aspect ratio (1%)
        assert (outcome == "loaded") == (mw == mh)


@SETTINGS
@given(
    mode=st.sampled_from(["L", "P", "I;16"]),
    value=st.integers(0, 65535),
    y=st.integers(0, SIZE - 1),
    x=st.integers(0, SIZE - 1),
)
@example(mode="L", value=18, y=0, x=0)
@example(mode="L", value=19, y=5, x=5)
@example(mode="P", value=255, y=19, x=19)
def test_paired_mask_values_out_of_range(
    make_data: Any, tmp_path: Path, mode: str, value: int, y: int, x: int
) -> None:
    if mode != "I;16":
        value %= 256
    w = _base(make_data, "paired")
    mask = _mask_paths(w, "paired", 0)[0]
    label = w.parts[0].astype(np.uint16 if mode == "I;16" else np.uint8)
    label[y, x] = value
    im = Image.fromarray(label)
    if mode == "P":
        im = Image.frombytes("P", (SIZE, SIZE), label.astype(np.uint8).tobytes())
        im.putpalette(list(range(256)) * 3)
    _save(mask, im)

    def check(data: FaceData) -> None:
        assert data.parts is not None
        np.testing.assert_array_equal(data.parts[data.names.index(w.names[0])], label)
        _check_untouched(data, w, w.names[1:])

    outcome = verify(
        "mask value out of range (paired)", tmp_path, w, "paired", (mask,), w.names[0], check
    )
    assert (outcome == "loaded") == (value <= 18)


@SETTINGS
@given(value=st.integers(0, 255), mode=st.sampled_from(["L", "1", "RGB", "LA"]))
@example(value=0, mode="L")
def test_celebamask_part_mask_values(make_data: Any, tmp_path: Path, value: int, mode: str) -> None:
    w = _base(make_data, "celebamask_hq")
    mask = _mask_paths(w, "celebamask_hq", 2)[0]  # the skin mask: any nonzero value marks skin
    with Image.open(mask) as im:
        box = np.asarray(im) > 0
    grey = np.where(box, value, 0).astype(np.uint8)
    _save(mask, Image.fromarray(grey).convert(mode) if mode != "1" else Image.fromarray(grey > 0))
    expected = w.parts[2].copy()
    if value == 0:  # an empty skin mask: no skin, background where skin was on top
        expected[expected == SKIN] = 0

    def check(data: FaceData) -> None:
        assert data.parts is not None
        np.testing.assert_array_equal(data.parts[2], expected)
        _check_untouched(data, w, w.names[:2])

    kind = "part mask value 0..255, modes L/1/RGB/LA (CelebAMask-HQ)"
    assert verify(kind, tmp_path, w, "celebamask_hq", (mask,), w.names[2], check) == "loaded"


# ----------------------------------------------------------------------------- annotation files

_token = st.text(
    st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs")), min_size=1, max_size=4
)


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


@pytest.mark.parametrize("layout", LABELLED)
@SETTINGS
@given(
    row=st.integers(0, 2),
    op=st.sampled_from(["drop", "extra", "text"]),
    count=st.integers(1, 3),
    column=st.integers(0, 39),
    token=_token,
)
@example(row=0, op="text", count=1, column=0, token="+1")  # int("+1") == 1: a valid value
@example(row=1, op="text", count=1, column=5, token="١")  # an Arabic-Indic one, int() reads it
@example(row=2, op="text", count=1, column=39, token="1.0")
def test_attribute_rows(
    make_data: Any,
    tmp_path: Path,
    layout: str,
    row: int,
    op: str,
    count: int,
    column: int,
    token: str,
) -> None:
    w = _base(make_data, layout)
    path = w.root / ATTR_FILE[layout]
    lines = path.read_text().splitlines()
    fields = lines[2 + row].split()
    if op == "drop":
        del fields[len(fields) - count :]
    elif op == "extra":
        fields += ["1"] * count
    else:
        fields[1 + column] = token
    lines[2 + row] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    parsed = _int_or_none(token) if op == "text" else None

    def check(data: FaceData) -> None:
        assert op == "text" and parsed in (-1, 1), f"{op} {token!r} was accepted"
        assert data.attrs is not None
        i = data.names.index(w.names[row])
        assert data.attrs[i, column] == (parsed == 1)
        others = np.delete(np.arange(40), column)
        np.testing.assert_array_equal(data.attrs[i, others], (w.attrs[row, others] > 0))
        _check_untouched(data, w, [n for n in w.names if n != w.names[row]])

    kind = {"drop": "attribute row: missing columns", "extra": "attribute row: extra columns"}
    outcome = verify(
        kind.get(op, "attribute value: random token"),
        tmp_path,
        w,
        layout,
        (path,),
        w.names[row],
        check,
    )
    assert (outcome == "loaded") == (op == "text" and parsed in (-1, 1))


@pytest.mark.parametrize("layout", LABELLED)
@SETTINGS
@given(op=st.sampled_from(["drop", "repeat", "unknown", "swap"]), column=st.integers(0, 39))
def test_attribute_header(
    make_data: Any, tmp_path: Path, layout: str, op: str, column: int
) -> None:
    w = _base(make_data, layout)
    path = w.root / ATTR_FILE[layout]
    lines = path.read_text().splitlines()
    names = list(ATTRIBUTE_NAMES)
    if op == "drop":
        del names[column]
    elif op == "repeat":
        names.append(names[column])
    elif op == "unknown":
        names[column] = names[column] + "_x"
    else:  # a permuted header is fine: columns are matched by name
        names[0], names[column] = names[column], names[0]
        lines[2:] = [
            " ".join([f[0], f[1 + column], *f[2 : 1 + column], f[1], *f[2 + column :]])
            if column
            else " ".join(f)
            for f in (line.split() for line in lines[2:])
        ]
    lines[1] = " ".join(names)
    path.write_text("\n".join(lines) + "\n")

    def check(data: FaceData) -> None:
        assert op == "swap", f"header {op} was accepted"
        _check_untouched(data, w, w.names)

    outcome = verify(
        "attribute header: missing, repeated, unknown or permuted names",
        tmp_path,
        w,
        layout,
        (path,),
        None,
        check,
    )
    assert (outcome == "loaded") == (op == "swap")


@pytest.mark.parametrize("layout", LABELLED)
@SETTINGS
@given(row=st.integers(0, 2), twice_at=st.integers(0, 3))
def test_duplicate_attribute_rows(
    make_data: Any, tmp_path: Path, layout: str, row: int, twice_at: int
) -> None:
    w = _base(make_data, layout)
    path = w.root / ATTR_FILE[layout]
    lines = path.read_text().splitlines()
    lines.insert(2 + twice_at, lines[2 + row])
    path.write_text("\n".join(lines) + "\n")
    outcome = verify(
        "attribute file lists an image twice",
        tmp_path,
        w,
        layout,
        (path, "listed twice"),
        w.names[row],
        lambda d: None,
    )
    assert outcome == "error"


@layouts
@SETTINGS
@given(k=st.integers(0, 2), ext=st.sampled_from([".bmp", ".png", ".PNG", ".webp"]))
def test_duplicate_image_names(
    make_data: Any, tmp_path: Path, layout: str, k: int, ext: str
) -> None:
    w = _base(make_data, layout)
    original = _image_path(w, layout, k)
    copy = _image_path(w, layout, k, ext)
    if copy.name == original.name:  # same file name: use another stem case instead
        copy = copy.with_name(_stem(original.name) + ".bmp")
    _save(copy, Image.fromarray(w.images[k]), **({"lossless": True} if ext == ".webp" else {}))

    def check(data: FaceData) -> None:  # the plain folder is not keyed by name: both load
        assert layout == "folder" and len(data.names) == 4
        np.testing.assert_array_equal(data.images[data.names.index(copy.name)], w.images[k])
        _check_untouched(data, w, w.names)

    first, second = sorted([original, copy], key=lambda p: natural_key(p.name))
    kind = "two images with the same name, other extension"
    outcome = verify(kind, tmp_path, w, layout, (second, first.name), second.name, check)
    assert (outcome == "loaded") == (layout == "folder")


@layouts
def test_a_stray_or_foreign_attribute_file(make_data: Any, tmp_path: Path, layout: str) -> None:
    """A plain folder ignores a text file; labelled layouts read theirs and say which row."""
    w = _base(make_data, layout)
    if layout == "folder":
        (w.root / "attributes.txt").write_text("not an attribute file\n")

        def check(data: FaceData) -> None:
            assert data.attrs is None and data.parts is None
            _check_untouched(data, w, w.names)

        assert (
            verify("stray text file in a plain folder", tmp_path, w, layout, (), None, check)
            == "loaded"
        )
        return
    path = w.root / ATTR_FILE[layout]
    path.write_bytes(b"\xff\xfe not utf-8")
    verify("attribute file not UTF-8", tmp_path, w, layout, (path,), None, lambda d: pytest.fail())


@pytest.mark.parametrize("layout", [*LAYOUTS, "masks only"])
def test_empty_folder(make_data: Any, tmp_path: Path, layout: str) -> None:
    written_as = "celebamask_hq" if layout == "masks only" else layout
    w = _base(make_data, written_as)
    folder = _image_dir(w, written_as)
    for p in folder.iterdir():
        p.unlink()
    if layout == "masks only":  # CelebAMask-HQ without its image folder: no layout at all
        folder.rmdir()
        folder = w.root
    verify("empty folder", tmp_path, w, layout, (folder,), None, lambda d: pytest.fail())


@SETTINGS
@given(row=st.integers(0, 2), value=st.sampled_from(["3", "-1", "x", "0 0", ""]))
def test_celeba_partition_values(make_data: Any, tmp_path: Path, row: int, value: str) -> None:
    w = _base(make_data, "celeba")
    path = w.root / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    lines[row] = f"{w.names[row]} {value}".rstrip()
    path.write_text("\n".join(lines) + "\n")
    outcome = verify(
        "partition file: bad split code",
        tmp_path,
        w,
        "celeba",
        (path,),
        w.names[row],
        lambda d: None,
    )
    assert outcome == "error"


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, Any]]:
    """A tiny VAE checkpoint laid out as training writes it (weights, Adam state, config),
    without running Lightning; and its model's state dict."""
    import torch

    from latentcam.checkpoint import CHECKPOINT_KEY, checkpoint_payload
    from latentcam.config import load_config
    from latentcam.models.registry import build_model

    cfg = load_config(["tiny"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    optimiser = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 3, 32, 32)).mu.sum().backward()
    optimiser.step()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    torch.save(
        {
            "epoch": 1,
            "global_step": 6,
            "state_dict": {f"model.{k}": v for k, v in state.items()},
            "optimizer_states": [optimiser.state_dict()],
            CHECKPOINT_KEY: checkpoint_payload(cfg),
        },
        path,
    )
    return path.read_bytes(), state


@SETTINGS
@given(
    how=st.sampled_from(["truncate", "overwrite", "flip"]),
    where=st.floats(0.0, 1.0, exclude_max=True),
    noise=st.binary(min_size=1, max_size=64),
)
@example(how="truncate", where=0.1, noise=b"\0")  # a short file: mmap fails with EINVAL
@example(how="truncate", where=0.0, noise=b"\0")  # an empty file
def test_damaged_checkpoint(
    checkpoint_bytes: tuple[bytes, dict[str, Any]],
    tmp_path: Path,
    how: str,
    where: float,
    noise: bytes,
) -> None:
    """A damaged checkpoint gives one CheckpointError, or loads; a cut one never loads."""
    import torch

    from latentcam.checkpoint import load_run
    from latentcam.errors import CheckpointError

    data, state = checkpoint_bytes
    pos = int(len(data) * where)
    if how == "truncate":
        damaged = data[:pos]
    elif how == "overwrite":
        damaged = data[:pos] + noise + data[pos + len(noise) :]
    else:
        damaged = data[:pos] + bytes([data[pos] ^ (1 << (noise[0] % 8))]) + data[pos + 1 :]
    path = tmp_path / f"damaged-{next(_caches)}.ckpt"
    path.write_bytes(damaged[: len(data)])
    kind = f"checkpoint: {how} ({'cut short' if how == 'truncate' else 'bytes replaced'})"
    try:
        run = load_run(path)
    except CheckpointError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        TALLY[kind]["one CheckpointError naming the file"] += 1
        return
    assert how != "truncate", f"a checkpoint cut at {pos} of {len(data)} bytes loaded"
    loaded = run.model.state_dict()
    same = all(torch.equal(loaded[k], v) for k, v in state.items())
    # no checksum: damage inside tensor bytes goes unnoticed (see docs/reliability.md)
    TALLY[kind]["loaded, weights intact" if same else "loaded, weights silently damaged"] += 1
