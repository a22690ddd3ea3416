"""Seeded, procedural synthetic faces with exact part maps, attributes and factors.

Real face datasets (CelebA, CelebAMask-HQ) cannot be shipped, so latentcam renders its
own faces: a head seen from the front, with pose (yaw, roll), face shape, skin tone, hair
(colour, length, bangs, bald), ears, eyes (white, iris, pupil, gaze), brows, a shaded
nose, lips (smile, opening, size, colour), glasses, hat, earrings, necklace, beard, neck,
clothes, a coloured background, side lighting and mild pixel noise. Every image comes
with its 19-class part map in the CelebAMask-HQ order (Lee et al., CVPR 2020,
"MaskGAN"; later ids win where parts overlap), its 40 CelebA attributes (Liu et al.,
ICCV 2015; those the renderer can express, the rest -1) and its ground-truth factors:
``len(FACTOR_NAMES)`` independent factors, each uniform in [0, 1].

Because each factor moves a known set of face regions (:data:`FACTOR_REGIONS`), the
faces are where explanations can be *scored*: a latent unit that carries ``smile``
should light up the mouth.

How it is drawn: every part is a signed distance (in image units) turned into a soft
coverage ``clip(0.5 - d / pixel, 0, 1)``, so edges are anti-aliased over about one
pixel. Colours are painted back to front (background, ears, hair behind the head, neck,
clothes, necklace, earrings, face, nose, glasses, eyes, brows, mouth, lips, hair over the
forehead, hat), each with its own coverage, so abutting parts meet without seams. The
part map is built from the same coverages: a pixel gets the last class id (CelebAMask-HQ
order) whose coverage exceeds 0.5, where parts that lie behind the face in the picture
(ears, earrings, necklace, neck, hair) are cut out by the face's mask, and neck and cloth
by the necklace's. Head parts live in a rolled head frame; yaw bends the horizontal
coordinate of the face features through a cylinder, ``u_face = R (arcsin(u / R) - yaw)``,
which shifts them sideways and narrows the far side, and moves the ears and the hair the
other way. Everything is vectorised with NumPy over small batches whose per-pixel arrays
stay in the CPU cache; small parts are computed only on the rows that can hold them.

Side convention: ``l_eye``/``l_brow``/``l_ear`` are the person's left, i.e. the right
half of the image (x > 0), as for a person facing the camera.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from latentcam.data.classes import (
    ATTRIBUTE_IDS,
    ATTRIBUTE_NAMES,
    NUM_ATTRIBUTES,
    PART_IDS,
    PART_NAMES,
    REGIONS,
)
from latentcam.errors import InputError
from latentcam.io import (
    check_free_space,
    check_output,
    ensure_dir,
    make_temp_dir,
    remove_stale_temps,
    write_error,
    write_json,
)

log = logging.getLogger(__name__)

#: The ground-truth factors, each drawn independently and uniformly from [0, 1].
#: Signed ones (yaw, roll, gaze, light_direction) are neutral at 0.5. Binary ones
#: (glasses, hat, earrings, necklace) switch their part on above a threshold
#: (see :data:`THRESHOLDS`); above it the remaining fraction picks the style (colour).
#: Bumped whenever the renderer's output changes, so cached renders are not reused.
GENERATOR_VERSION = 1

FACTOR_NAMES: tuple[str, ...] = (
    "yaw",  # head turn, -0.35..0.35 rad; 1 turns the face towards image right
    "roll",  # in-plane head rotation, -0.3..0.3 rad
    "face_width",  # half-width of the face outline, 0.36..0.46 image units
    "face_height",  # chin depth below the face centre, 0.45..0.57 image units
    "skin_tone",  # pale (0) to dark (1)
    "hair_hue",  # position on the hair palette: black, brown, red, blond, gray
    "hair_length",  # bald below 0.1, then short (cap above the ears) to long (shoulders)
    "hair_style",  # amount of bangs over the forehead (0 none, 1 down to the brows)
    "eye_size",  # eye width and opening; small = narrow eyes
    "gaze",  # iris position, looking image-left (0) to image-right (1)
    "eye_color",  # iris colour: brown, hazel, green, blue
    "brow_thickness",  # thin (0) to bushy (1)
    "nose_size",  # nose width
    "smile",  # mouth-corner curvature: slight frown (0) to broad smile (1)
    "mouth_open",  # closed below 0.6, then slightly to clearly open
    "lip_size",  # lip thickness
    "lip_color",  # natural (0) to red lipstick (1)
    "glasses",  # eyeglasses above 0.65; the rest picks the frame colour
    "hat",  # hat above 0.75; the rest picks the hat colour
    "earrings",  # earrings above 0.65; the rest picks gold..silver
    "necklace",  # necklace above 0.7; the rest picks gold..silver
    "beard",  # stubble above 0.5, mustache above 0.6, full beard above 0.75
    "background_hue",  # hue of the background
    "cloth_hue",  # hue of the clothes
    "light_direction",  # light from image-left (0) to image-right (1)
)
NUM_FACTORS = len(FACTOR_NAMES)
FACTOR_IDS: dict[str, int] = {name: i for i, name in enumerate(FACTOR_NAMES)}

_ALL_REGIONS: tuple[str, ...] = tuple(REGIONS)

#: For each factor, the regions (names of :data:`latentcam.data.classes.REGIONS`) whose
#: pixels it changes. Holding the other factors and the noise fixed, changing one factor
#: only changes pixels inside these regions of the image before or after the change
#: (up to anti-aliased edge pixels next to them).
FACTOR_REGIONS: dict[str, tuple[str, ...]] = {
    "yaw": _ALL_REGIONS,
    "roll": _ALL_REGIONS,
    "face_width": ("skin", "ears", "hair", "hat", "earrings", "neck", "glasses", "background"),
    "face_height": ("skin", "neck", "hair", "background"),
    "skin_tone": ("skin", "nose", "ears", "neck", "mouth", "glasses"),
    "hair_hue": ("hair", "brows", "skin", "mouth"),
    "hair_length": ("hair", "skin", "ears", "brows", "background"),
    "hair_style": ("hair", "skin", "brows"),
    "eye_size": ("eyes",),
    "gaze": ("eyes",),
    "eye_color": ("eyes",),
    "brow_thickness": ("brows",),
    "nose_size": ("nose",),
    "smile": ("mouth",),
    "mouth_open": ("mouth",),
    "lip_size": ("mouth",),
    "lip_color": ("mouth",),
    "glasses": ("glasses",),
    "hat": ("hat",),
    "earrings": ("earrings",),
    "necklace": ("neck",),
    "beard": ("skin", "mouth"),
    "background_hue": ("background",),
    "cloth_hue": ("cloth",),
    "light_direction": _ALL_REGIONS,
}

#: Factor thresholds that switch a part or an attribute on (factor > threshold), except
#: ``bald`` (hair_length < threshold) and ``narrow_eyes`` / ``pale_skin`` (below).
THRESHOLDS: dict[str, float] = {
    "bald": 0.1,
    "bangs": 0.55,
    "narrow_eyes": 0.25,
    "bushy_brows": 0.7,
    "big_nose": 0.7,
    "smiling": 0.55,
    "mouth_open": 0.6,
    "big_lips": 0.7,
    "lipstick": 0.7,
    "glasses": 0.65,
    "hat": 0.75,
    "earrings": 0.65,
    "necklace": 0.7,
    "stubble": 0.5,
    "mustache": 0.6,
    "full_beard": 0.75,
    "pale_skin": 0.15,
    "male_hair": 0.3,
}

#: hair_hue ranges of the CelebA hair-colour attributes (lower bound, upper bound).
HAIR_COLOR_RANGES: dict[str, tuple[float, float]] = {
    "Black_Hair": (0.0, 0.25),
    "Brown_Hair": (0.25, 0.5),
    "Blond_Hair": (0.62, 0.81),
    "Gray_Hair": (0.81, float("inf")),
}  # lower bound included, upper excluded; 0.5..0.62 is red/auburn (no CelebA attribute)

MIN_SIZE, MAX_SIZE = 16, 1024
#: Pixels rendered per vectorised pass (4 images at 64 px): the per-pixel float32 arrays
#: (64 KiB) stay in the CPU cache and below glibc's mmap threshold, so temporaries are
#: reused instead of being page-faulted in again; measured about twice as fast as
#: passes of 32 images.
_PIXELS_PER_PASS = 4 * 64 * 64
_NOISE_STD = 0.012  # standard deviation of the mild pixel noise (in [0, 1] intensity units)

# Face geometry, in image units (the image shows [-1, 1] / _ZOOM; y points down).
# Head-frame v is measured from the face centre, which sits at y = _CY.
_CY = -0.06
_FACE_TOP = 0.56  # face-ellipse radius above the centre (the skull of a bald head)
_EYE_X, _EYE_Y = 0.155, -0.02
_BROW_X, _BROW_Y = 0.16, -0.145
_MOUTH_Y = 0.28
_HAIRLINE_Y = -0.36
_EAR_ANGLE = 1.75  # ears sit this far (rad) round the head cylinder from the nose
_NECK_W = 0.19
_CYLINDER_R = 0.45  # radius of the yaw cylinder (about the mean face half-width x 1.1)

_F32 = np.float32


class SynthBatch(NamedTuple):
    """A batch of synthetic faces.

    Attributes:
        images: (n, S, S, 3) uint8 RGB.
        parts: (n, S, S) uint8 class ids 0..18 (CelebAMask-HQ order, later ids win).
        attrs: (n, 40) int8 in {-1, 1}, CelebA order (:data:`classes.ATTRIBUTE_NAMES`).
        factors: (n, F) float32 in [0, 1], F = ``len(FACTOR_NAMES)``.
    """

    images: np.ndarray
    parts: np.ndarray
    attrs: np.ndarray
    factors: np.ndarray


class FactorSample(NamedTuple):
    """Factors of a range of image indices and the seeds of their pixel noise."""

    factors: np.ndarray  # (n, F) float32 in [0, 1]
    noise_seeds: np.ndarray  # (n,) uint64


# --------------------------------------------------------------------------- public API


def sample_factors(n: int, seed: int, start: int = 0) -> FactorSample:
    """Draw the factors of images ``start .. start + n - 1`` of the set ``seed``.

    Image i's factors and noise seed depend only on ``(seed, i)`` (one NumPy generator
    seeded with the pair), so any chunking of a range gives the same values.
    """
    _check_int("n", n, 1)
    _check_int("seed", seed, 0)
    _check_int("start", start, 0)
    factors = np.empty((n, NUM_FACTORS), np.float32)
    noise_seeds = np.empty(n, np.uint64)
    for j in range(n):
        rng = np.random.default_rng([seed, start + j])
        factors[j] = rng.random(NUM_FACTORS, dtype=np.float32)
        noise_seeds[j] = rng.integers(0, 2**63, dtype=np.uint64)
    return FactorSample(factors, noise_seeds)


def render_faces(n: int, size: int, seed: int, start: int = 0) -> SynthBatch:
    """Render images ``start .. start + n - 1`` of the synthetic face set ``seed``.

    Image i depends only on ``(seed, start + i)``: rendering 0..99 in one call or in two
    calls (``start=0, n=50`` and ``start=50, n=50``) gives identical arrays.

    Args:
        n: number of images (>= 1).
        size: side S in pixels (16..1024).
        seed: non-negative seed of the face set.
        start: index of the first image.

    Returns:
        :class:`SynthBatch` with images (n, S, S, 3) uint8, parts (n, S, S) uint8,
        attrs (n, 40) int8 in {-1, 1} and factors (n, F) float32 in [0, 1].
    """
    _check_size(size)
    sample = sample_factors(n, seed, start)
    return render_from_factors(sample.factors, size, sample.noise_seeds)


def render_from_factors(
    factors: np.ndarray, size: int, noise_seed: int | Sequence[int] | np.ndarray = 0
) -> SynthBatch:
    """Render faces from explicit factor values.

    Useful to change one factor and hold everything else (including the pixel noise)
    fixed: the changed pixels then lie in that factor's :data:`FACTOR_REGIONS`.

    Args:
        factors: (n, F) or (F,) float values in [0, 1], columns in :data:`FACTOR_NAMES` order.
        size: side S in pixels (16..1024).
        noise_seed: one seed for all images or one per image (n,); same seed, same noise.

    Returns:
        :class:`SynthBatch` (the factors are returned as float32).
    """
    _check_size(size)
    fac = np.asarray(factors, dtype=np.float32)
    if fac.ndim == 1:
        fac = fac[None]
    if fac.ndim != 2 or fac.shape[1] != NUM_FACTORS or fac.shape[0] < 1:
        raise InputError(
            f"factors must have shape (n, {NUM_FACTORS}) with n >= 1 (columns: FACTOR_NAMES), "
            f"got {np.shape(factors)}"
        )
    if not np.all(np.isfinite(fac)) or fac.min() < 0.0 or fac.max() > 1.0:
        raise InputError("factors must be finite values in [0, 1]; clip them before rendering")
    n = fac.shape[0]
    seeds = np.asarray(noise_seed)
    if seeds.ndim == 0:
        seeds = np.full(n, seeds)
    if seeds.shape != (n,) or not np.issubdtype(seeds.dtype, np.integer) or np.any(seeds < 0):
        raise InputError(
            f"noise_seed must be one non-negative integer or {n} of them, got shape {seeds.shape}"
        )
    images = np.empty((n, size, size, 3), np.uint8)
    parts = np.empty((n, size, size), np.uint8)
    chunk = max(1, _PIXELS_PER_PASS // (size * size))
    grid = _Grid(size)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        images[lo:hi], parts[lo:hi] = _render_chunk(fac[lo:hi], grid, seeds[lo:hi])
    return SynthBatch(images, parts, attributes_from_factors(fac), fac)


def attributes_from_factors(factors: np.ndarray) -> np.ndarray:
    """The 40 CelebA attributes (n, 40) int8 in {-1, 1} implied by factors (n, F).

    Set from the factors (see :data:`THRESHOLDS`): Smiling, Mouth_Slightly_Open,
    Eyeglasses, Wearing_Hat, Bangs, Bald, Black/Blond/Brown/Gray_Hair, Male (mustache or
    beard, or short hair), Wearing_Earrings, Wearing_Necklace, Wearing_Lipstick,
    Pale_Skin, Narrow_Eyes, Big_Lips, Big_Nose, Bushy_Eyebrows, No_Beard, Mustache,
    5_o_Clock_Shadow. All others are -1.
    """
    fac = np.asarray(factors, dtype=np.float32).reshape(-1, NUM_FACTORS)
    # compared in float64, exactly as the renderer does
    col = {name: fac[:, i].astype(np.float64) for i, name in enumerate(FACTOR_NAMES)}
    t = THRESHOLDS
    bald = col["hair_length"] < t["bald"]
    has_hair = ~bald
    beard = col["beard"]
    on: dict[str, np.ndarray] = {
        "Smiling": col["smile"] > t["smiling"],
        "Mouth_Slightly_Open": col["mouth_open"] > t["mouth_open"],
        "Eyeglasses": col["glasses"] > t["glasses"],
        "Wearing_Hat": col["hat"] > t["hat"],
        "Bangs": has_hair & (col["hair_style"] > t["bangs"]),
        "Bald": bald,
        "Wearing_Earrings": col["earrings"] > t["earrings"],
        "Wearing_Necklace": col["necklace"] > t["necklace"],
        "Wearing_Lipstick": col["lip_color"] > t["lipstick"],
        "Pale_Skin": col["skin_tone"] < t["pale_skin"],
        "Narrow_Eyes": col["eye_size"] < t["narrow_eyes"],
        "Big_Lips": col["lip_size"] > t["big_lips"],
        "Big_Nose": col["nose_size"] > t["big_nose"],
        "Bushy_Eyebrows": col["brow_thickness"] > t["bushy_brows"],
        "Mustache": beard > t["mustache"],
        "No_Beard": beard <= t["mustache"],
        "5_o_Clock_Shadow": (beard > t["stubble"]) & (beard <= t["mustache"]),
        "Male": (beard > t["mustache"]) | (col["hair_length"] < t["male_hair"]),
    }
    for name, (lo, hi) in HAIR_COLOR_RANGES.items():
        on[name] = has_hair & (col["hair_hue"] >= lo) & (col["hair_hue"] < hi)
    attrs = np.full((fac.shape[0], NUM_ATTRIBUTES), -1, np.int8)
    for name, mask in on.items():
        attrs[mask, ATTRIBUTE_IDS[name]] = 1
    return attrs


def estimate_bytes(n: int, size: int) -> int:
    """Disk space ``n`` faces at ``size`` px take (measured on ext4: about 15 files per face,
    each a 4 KiB block or more, and JPEG bytes growing with the area): an upper bound."""
    return n * (15 * 4096 + size * size * 3 // 8)


def write_synthetic(out: str | Path, n: int, size: int, seed: int, progress: bool = True) -> Path:
    """Render ``n`` faces and write them in the CelebAMask-HQ official layout under ``out``.

    Layout (the loaders read it like the real dataset)::

        CelebA-HQ-img/{i}.jpg                                   JPEG, quality 95
        CelebAMask-HQ-mask-anno/{i//2000}/{i:05d}_{part}.png    binary PNG (0/255, mode L)
                                                                per present part (not background)
        CelebAMask-HQ-attribute-anno.txt    n / the 40 names / "{i}.jpg" and 40 values -1|1
        synthetic-factors.csv               "image,<factor names>" / "{i}.jpg,<floats>"
        synthetic-meta.json                 generator, version, n, size, seed, factor names
                                            and regions

    The same arguments give byte-identical files. Everything is written into a temporary
    sibling folder that is renamed to ``out`` at the end, so an interrupted run leaves
    nothing half-written (which is why the files inside are written directly); the folder
    is named after the process (``.OUT.<pid>.<random>.tmp``) and the next run removes one
    whose process was killed (:func:`latentcam.io.remove_stale_temps`).

    Raises:
        InputError: ``out`` exists and is not an empty folder, or n / size / seed are invalid.
        OutputError: the disk has less free space than the faces need
            (:func:`estimate_bytes`), or a write fails (full or read-only disk); the
            temporary folder is removed.
    """
    out = check_output(out)
    _check_int("n", n, 1)
    _check_size(size)
    _check_int("seed", seed, 0)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise InputError(
            f"output {out} already exists and is not an empty folder; "
            "choose a new path or remove it first"
        )
    ensure_dir(out.parent, what="output parent")
    check_free_space(
        out.parent,
        estimate_bytes(n, size),
        f"{n} synthetic faces at {size} px",
        "free some space, write elsewhere, or render fewer faces (--n)",
    )
    remove_stale_temps(out.parent)  # the folders of killed runs
    tmp = make_temp_dir(out.parent, out.name)
    try:
        _write_layout(tmp, n, size, seed, progress)
        os.replace(tmp, out)  # replaces an empty folder too (POSIX rename)
    except OSError as err:
        raise write_error(err, out) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %d synthetic faces (%d px, seed %d) to %s", n, size, seed, out)
    return out


# --------------------------------------------------------------------------- writing


_WRITE_CHUNK = 256  # images per render call while writing
_MASKS_PER_FOLDER = 2000  # CelebAMask-HQ groups its mask files by i // 2000


def _write_layout(root: Path, n: int, size: int, seed: int, progress: bool) -> None:
    from tqdm import tqdm

    img_dir = root / "CelebA-HQ-img"
    mask_dir = root / "CelebAMask-HQ-mask-anno"
    img_dir.mkdir()
    for folder in range((n - 1) // _MASKS_PER_FOLDER + 1):
        (mask_dir / str(folder)).mkdir(parents=True)
    attr_lines = [str(n), " ".join(ATTRIBUTE_NAMES)]
    factor_lines = ["image," + ",".join(FACTOR_NAMES)]
    with tqdm(total=n, desc="synth", unit="img", disable=not progress) as bar:
        for lo in range(0, n, _WRITE_CHUNK):
            count = min(_WRITE_CHUNK, n - lo)
            batch = render_faces(count, size, seed, start=lo)
            for j in range(count):
                i = lo + j
                Image.fromarray(batch.images[j]).save(img_dir / f"{i}.jpg", quality=95)
                _write_masks(mask_dir / str(i // _MASKS_PER_FOLDER), i, batch.parts[j])
                attr_lines.append(f"{i}.jpg " + " ".join(str(int(a)) for a in batch.attrs[j]))
                factor_lines.append(f"{i}.jpg," + ",".join(f"{v:.9g}" for v in batch.factors[j]))
            bar.update(count)
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(attr_lines) + "\n")
    (root / "synthetic-factors.csv").write_text("\n".join(factor_lines) + "\n")
    write_json(
        root / "synthetic-meta.json",
        {
            "generator": "latentcam.synthetic",
            "version": GENERATOR_VERSION,
            "n": n,
            "size": size,
            "seed": seed,
            "factor_names": list(FACTOR_NAMES),
            "factor_regions": {k: list(v) for k, v in FACTOR_REGIONS.items()},
        },
    )


def _write_masks(folder: Path, index: int, parts: np.ndarray) -> None:
    """One binary PNG (0/255, mode L) per present part except background."""
    present = np.bincount(parts.ravel(), minlength=len(PART_NAMES))
    for cid in np.flatnonzero(present[1:]) + 1:
        mask = np.where(parts == cid, np.uint8(255), np.uint8(0))
        Image.fromarray(mask).save(folder / f"{index:05d}_{PART_NAMES[cid]}.png")  # mode L


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_size(size: object) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise InputError(f"size must be an integer number of pixels, got {size!r}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}")


# --------------------------------------------------------------------------- palettes


def _palette(
    stops: Sequence[tuple[float, tuple[float, float, float]]], t: np.ndarray
) -> np.ndarray:
    """Piecewise-linear colour map: t (n,) in [0, 1] -> (n, 3) float32."""
    xs = np.array([s for s, _ in stops], np.float64)
    rgb = np.array([c for _, c in stops], np.float64)
    return np.stack([np.interp(t, xs, rgb[:, k]) for k in range(3)], axis=-1).astype(_F32)


def _hsv(h: np.ndarray, s: float, v: float) -> np.ndarray:
    """HSV -> RGB for hues h (n,) in [0, 1] with fixed saturation and value; (n, 3)."""
    k = (np.array([5.0, 3.0, 1.0])[None] + 6.0 * np.asarray(h, np.float64)[:, None]) % 6.0
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb.astype(_F32)


_SKIN = (
    (0.0, (0.98, 0.86, 0.78)),
    (0.25, (0.94, 0.75, 0.62)),
    (0.5, (0.80, 0.58, 0.43)),
    (0.75, (0.58, 0.39, 0.27)),
    (1.0, (0.36, 0.23, 0.16)),
)
_HAIR = (
    (0.0, (0.06, 0.05, 0.05)),
    (0.24, (0.11, 0.08, 0.06)),
    (0.26, (0.26, 0.16, 0.09)),
    (0.49, (0.45, 0.29, 0.16)),
    (0.51, (0.50, 0.24, 0.11)),
    (0.61, (0.66, 0.33, 0.15)),
    (0.63, (0.74, 0.58, 0.34)),
    (0.80, (0.94, 0.82, 0.55)),
    (0.82, (0.50, 0.49, 0.48)),
    (1.0, (0.88, 0.88, 0.86)),
)
_IRIS = (
    (0.0, (0.22, 0.12, 0.06)),
    (0.35, (0.42, 0.27, 0.12)),
    (0.55, (0.42, 0.42, 0.18)),
    (0.75, (0.28, 0.46, 0.30)),
    (1.0, (0.28, 0.48, 0.75)),
)
_METAL = ((0.0, (0.95, 0.76, 0.30)), (1.0, (0.86, 0.87, 0.92)))
_FRAME = ((0.0, (0.08, 0.08, 0.09)), (0.5, (0.35, 0.20, 0.10)), (1.0, (0.75, 0.60, 0.30)))


# --------------------------------------------------------------------------- rendering


_ZOOM = 1.12  # the image shows [-1/_ZOOM, 1/_ZOOM] of the face frame
_MAX_ROLL = 0.3  # rad, at roll = 0 or 1
_MAX_YAW = 0.35  # rad, at yaw = 0 or 1
#: Small parts are drawn only on the block of image rows that can contain them (a
#: contiguous slice of the flattened pixels); switch off to check the blocks are wide enough.
_USE_BANDS = True


class _Grid:
    """Pixel-centre coordinates of an S x S image, flattened to (1, P) with P = S * S.

    Pixels are kept flat so that every NumPy inner loop runs over many pixels instead
    of a short axis; per-image parameters are (B, 1), colours (3, B, 1).
    """

    def __init__(self, size: int) -> None:
        g = ((np.arange(size, dtype=np.float64) + 0.5) * (2.0 / size) - 1.0) / _ZOOM
        yy, xx = np.meshgrid(g, g, indexing="ij")
        self.size = size
        self.x = xx.reshape(1, -1).astype(_F32)  # (1, P), image units, right
        self.y = yy.reshape(1, -1).astype(_F32)  # (1, P), image units, down
        self.inv_px = _F32(size * _ZOOM / 2.0)  # pixels per image unit

    def rows(self, y0: float, y1: float) -> slice:
        """The flat-pixel slice of the image rows that can hold y in [y0, y1] (+2 px margin)."""
        if not _USE_BANDS:
            return slice(None)
        S = self.size
        r0 = int(np.floor((y0 * _ZOOM + 1.0) * 0.5 * S)) - 2
        r1 = int(np.ceil((y1 * _ZOOM + 1.0) * 0.5 * S)) + 2
        r0, r1 = min(max(r0, 0), S), min(max(r1, 0), S)
        return slice(r0 * S, max(r0, r1) * S)


class _Frame(NamedTuple):
    """Per-pixel coordinates and masks shared by the parts, on a block of rows."""

    sl: slice  # the flat-pixel slice of the full image these arrays cover
    X: np.ndarray  # (1, p) image x
    Y: np.ndarray  # (1, p) image y
    u: np.ndarray  # (B, p) rolled head frame, right
    v: np.ndarray  # (B, p) rolled head frame, down from the face centre
    uf: np.ndarray  # (B, p) u measured along the yaw cylinder (face features)
    auf: np.ndarray  # (B, p) |uf|
    right: np.ndarray  # (B, p) bool, uf >= 0: the person's left side (l_* parts)
    face: np.ndarray  # (B, p) coverage of the face outline
    not_face: np.ndarray  # (B, p) 1 where the face's label is not set (face coverage <= 0.5)

    def band(self, sl: slice) -> _Frame:
        return _Frame(sl, *(arr[:, sl] for arr in self[1:]))


def _col(a: np.ndarray | float) -> np.ndarray:
    """Per-image scalars (B,) -> (B, 1) float32, broadcasting over pixels."""
    return np.asarray(a, _F32).reshape(-1, 1)


def _rgb(a: np.ndarray) -> np.ndarray:
    """Per-image colours (B, 3) -> (3, B, 1) float32, broadcasting over pixels."""
    return np.ascontiguousarray(np.asarray(a, _F32).T)[:, :, None]


def _const_rgb(rgb: tuple[float, float, float]) -> np.ndarray:
    return np.asarray(rgb, _F32).reshape(3, 1, 1)


class _Canvas:
    """Colours painted back to front; part labels applied afterwards in class-id order.

    The two orders differ on purpose: the part map follows CelebAMask-HQ (later ids win),
    the picture follows depth (hair behind the neck, ears behind the face...). Painting
    each colour layer with its uncarved coverage, back to front, avoids the seams of
    background colour that carved, abutting layers would leave along their edges.
    """

    def __init__(self, background: np.ndarray, batch: int, pixels: int) -> None:
        self.img = np.array(np.broadcast_to(background, (3, batch, pixels)), dtype=_F32)
        self._labels: list[tuple[int, np.ndarray, slice]] = []
        self._shape = (batch, pixels)

    def paint(self, alpha: np.ndarray, colour: np.ndarray, sl: slice) -> None:
        """Blend ``colour`` (3, B, 1 or p) with coverage ``alpha`` (B, p) on the pixels ``sl``."""
        img = self.img[:, :, sl]
        delta = colour - img
        delta *= alpha
        img += delta

    def label(self, part: int, alpha: np.ndarray, sl: slice) -> None:
        """Pixels of ``sl`` whose coverage exceeds 0.5 get ``part`` (unless a later id wins)."""
        self._labels.append((part, alpha > 0.5, sl))

    def part_map(self) -> np.ndarray:
        """(B, P) uint8 class ids; later ids win."""
        parts = np.zeros(self._shape, np.uint8)
        for part, mask, sl in sorted(self._labels, key=lambda item: item[0]):
            parts[:, sl][mask] = part
        return parts


def _cov(d: np.ndarray, inv_px: np.float32) -> np.ndarray:
    """Signed distance (negative inside, image units) -> coverage in [0, 1], in place."""
    d *= -inv_px
    d += 0.5
    np.clip(d, 0.0, 1.0, out=d)
    return d


def _ellipse(
    px: np.ndarray, py: np.ndarray, a: np.ndarray | float, b: np.ndarray | float
) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse with radii (a, b).

    ``(k0 - 1) k0 / k1`` with ``k0 = |p / r|`` and ``k1 = |p / r^2|`` (the implicit
    function divided by its gradient): exact on the outline, so edges are anti-aliased
    evenly also along the long axis of a thin ellipse.
    """
    qx, qy = px / a, py / b
    k0 = np.sqrt(qx * qx + qy * qy)
    qx /= a
    qy /= b
    k1 = np.sqrt(qx * qx + qy * qy)
    np.maximum(k1, 1e-6, out=k1)
    k0 *= k0 - 1.0
    k0 /= k1
    return k0


def _frac(value: np.ndarray, threshold: float) -> np.ndarray:
    """Where a binary factor is above its threshold, the remaining fraction in [0, 1]."""
    return np.clip((value - threshold) / (1.0 - threshold), 0.0, 1.0)


def _render_chunk(
    fac: np.ndarray, grid: _Grid, noise_seeds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Render B faces from factors (B, F): images (B, S, S, 3) uint8, parts (B, S, S) uint8."""
    B = fac.shape[0]
    S = grid.size
    P = S * S
    ip = grid.inv_px
    f = {name: fac[:, i].astype(np.float64) for i, name in enumerate(FACTOR_NAMES)}
    th = THRESHOLDS
    pid = PART_IDS

    # ---- pixel noise (B, 3, P): uniform with mean 0 and variance 1 (4x cheaper than normal)
    noise = np.empty((B, 3, P), _F32)
    for j in range(B):
        np.random.default_rng(int(noise_seeds[j])).random(dtype=_F32, out=noise[j])
    noise -= 0.5
    noise *= _F32(np.sqrt(12.0))

    # ---- per-image parameters: (B,) float64, then (B, 1) float32 where used per pixel
    yaw = (f["yaw"] - 0.5) * (2.0 * _MAX_YAW)
    roll = (f["roll"] - 0.5) * (2.0 * _MAX_ROLL)
    sin_yaw = _col(np.sin(yaw))
    cr, sr = _col(np.cos(roll)), _col(np.sin(roll))
    fw = _col(0.36 + 0.10 * f["face_width"])
    fh = _col(0.45 + 0.12 * f["face_height"])
    has_hair = f["hair_length"] >= th["bald"]
    light = _col((f["light_direction"] - 0.5) * 2.0)
    skin_rgb = _palette(_SKIN, f["skin_tone"])
    hair_rgb = _palette(_HAIR, f["hair_hue"])
    skin = _rgb(skin_rgb)

    # rows that can hold a part given by its head-frame box v in [v0, v1], |u| <= umax
    cos_min, sin_max = float(np.cos(roll).min()), float(np.abs(np.sin(roll)).max())

    def head_rows(v0: float, v1: float, umax: float) -> slice:
        y0 = _CY + min(v0, v0 * cos_min) - sin_max * umax
        y1 = _CY + max(v1, v1 * cos_min) + sin_max * umax
        return grid.rows(y0, y1)

    # ---- head frame, rolled about the face centre: u right, v down
    X, Y = grid.x, grid.y
    dy = Y - _F32(_CY)
    u = cr * X + sr * dy
    v = cr * dy - sr * X

    # face outline: an egg with a narrower jaw; radius _FACE_TOP above the centre, fh below
    jaw = np.clip(v / fh, 0.0, 1.0)
    a = fw * (1.0 - 0.22 * jaw * jaw)
    b = _F32(_FACE_TOP) + (fh - _F32(_FACE_TOP)) * (v >= 0)  # (np.where is slow here)
    q, w = u / a, v / b
    k0 = np.sqrt(q * q + w * w)
    k1 = np.sqrt((q / a) ** 2 + (w / b) ** 2)
    face = _cov(k0 * (k0 - 1.0) / np.maximum(k1, 1e-6), ip)

    # yaw: the features lie on a cylinder of fixed radius R (face_width must not move
    # them); uf is the distance along it, which shifts them and narrows the far side
    R = _F32(_CYLINDER_R)
    uf = R * (np.arcsin(np.clip(u / R, -0.999, 0.999)) - _col(yaw))
    auf = np.abs(uf)
    # parts behind the face are carved out of the part map by its hard mask, so that every
    # pixel the union covers gets a label
    full = _Frame(slice(None), X, Y, u, v, uf, auf, uf >= 0, face, (face <= 0.5).astype(_F32))

    # ---- back to front. 0 background: its hue and a vertical gradient
    canvas = _Canvas(_rgb(_hsv(f["background_hue"], 0.35, 0.85)) * (1.08 - 0.10 * (Y + 1.0)), B, P)

    # ---- 8, 9 ears behind the face (the far ear hides when the head turns)
    ear_sl = head_rows(-0.05, 0.24, 0.62)  # ears and earrings
    fr = full.band(ear_sl)
    ear_u = []
    for s, part in ((1.0, "l_ear"), (-1.0, "r_ear")):
        eu = fw * _col(np.sin(s * _EAR_ANGLE + yaw) / np.sin(_EAR_ANGLE))
        ear = _cov(_ellipse(fr.u - eu, fr.v - 0.06, 0.058, 0.10), ip)
        inner = _cov(_ellipse(fr.u - eu + s * 0.012, fr.v - 0.055, 0.026, 0.06), ip)
        canvas.paint(ear, skin * (0.93 - 0.2 * inner), fr.sl)
        canvas.label(pid[part], ear * fr.not_face, fr.sl)
        ear_u.append(eu)

    # ---- 13 hair behind the head (and over the ears): a top ellipse, straight sides
    hair_front = None
    if np.any(has_hair):
        length = _col(_frac(f["hair_length"], th["bald"]))
        vol = 0.035 + 0.05 * length
        uh = u + 0.10 * sin_yaw
        top = _ellipse(uh, v + 0.04, fw + vol, _FACE_TOP + vol - 0.01)
        hw = fw + vol - 0.005 + 0.10 * np.clip(v - 0.25, 0.0, 1.0)
        sides = np.maximum(np.abs(uh) - hw, -0.05 - v)
        spread = (uh / hw) ** 2
        bottom = v - (-0.10 + 0.92 * length - 0.10 * spread * spread)
        outer = _cov(np.maximum(np.minimum(top, sides), bottom), ip) * _col(has_hair)
        fan = uh / np.maximum(v + 0.95, 0.1)  # strands fan out from above the crown
        strands = 0.92 + 0.05 * np.sin(fan * 61.0) + 0.03 * np.sin(fan * 143.0)
        strands *= 1.12 - 0.3 * np.clip(v + 0.45, 0.0, 1.0)
        strands += 0.12 * np.clip(1.0 - np.abs(v + 0.42 + 0.3 * fan * fan) * 12.0, 0.0, 1.0)
        hair_field = _rgb(hair_rgb) * strands
        canvas.paint(outer, hair_field, full.sl)
        # over the face: above the hairline, and bangs down towards the brows
        forehead = _cov(v - (_HAIRLINE_Y + 0.30 * (uf / 0.42) ** 2), ip)
        bangs_y = _HAIRLINE_Y + _col(f["hair_style"]) * (_BROW_Y - 0.01 - _HAIRLINE_Y)
        bangs_y = bangs_y + 0.012 * np.sin(uf * 55.0) + 0.05 * (uf / 0.42) ** 2
        bangs = _cov(v - bangs_y, ip) * _col(has_hair)
        on_face = bangs * face
        behind = outer * (full.not_face + (1.0 - full.not_face) * forehead)
        canvas.label(pid["hair"], np.maximum(behind, on_face), full.sl)
        hair_front = np.maximum(outer * np.maximum(forehead, bangs), on_face)

    # ---- 17 neck, 18 cloth, 16 necklace: the body does not roll, the neck follows the chin
    neck_x = -sr * 0.3
    fr = full.band(grid.rows(_CY + 0.15, 1.0))
    X, Y = fr.X, fr.Y
    nxd = np.abs(X - neck_x)
    neck = _cov(np.maximum(nxd - _NECK_W, (_CY + 0.15) - Y), ip)
    canvas.paint(neck, skin * (0.72 + 0.2 * np.clip((Y - _CY - fh) * 6.0, 0.0, 1.0)), fr.sl)
    shoulder = 0.66 + 0.22 * np.tanh(3.0 * np.maximum(np.abs(X) - 0.13, 0.0))
    notch = _ellipse(X - neck_x * 0.5, Y - 0.66, 0.17, 0.10)
    cloth = _cov(np.maximum(shoulder - Y, -notch), ip)
    cloth_rgb = _rgb(_hsv(f["cloth_hue"], 0.55, 0.6))
    canvas.paint(cloth, cloth_rgb * (1.0 - 0.25 * np.clip((Y - 0.7) * 3.3, 0.0, 1.0)), fr.sl)
    neck *= fr.not_face
    has_necklace = f["necklace"] > th["necklace"]
    if np.any(has_necklace):
        ring = np.sqrt((X - neck_x) ** 2 + (Y - 0.45) ** 2)
        chain = np.maximum(np.abs(ring - 0.18) - 0.011, np.maximum(nxd - _NECK_W, 0.45 - Y))
        pendant = np.sqrt((X - neck_x) ** 2 + (Y - 0.665) ** 2) - 0.045
        necklace = _cov(np.minimum(chain, pendant), ip) * _col(has_necklace)
        metal = _rgb(_palette(_METAL, _frac(f["necklace"], th["necklace"])))
        canvas.paint(necklace, metal, fr.sl)
        canvas.label(pid["neck_l"], necklace * fr.not_face, fr.sl)
        neck *= necklace <= 0.5
        cloth *= necklace <= 0.5
    canvas.label(pid["neck"], neck, fr.sl)
    canvas.label(pid["cloth"], cloth, fr.sl)

    # ---- 15 earrings: drops under the ear lobes, in front of the hair, behind the face
    has_earrings = f["earrings"] > th["earrings"]
    if np.any(has_earrings):
        fr = full.band(ear_sl)
        drop = np.minimum(*(_ellipse(fr.u - eu, fr.v - 0.18, 0.038, 0.052) for eu in ear_u))
        earring = _cov(drop, ip) * _col(has_earrings)
        metal = _rgb(_palette(_METAL, _frac(f["earrings"], th["earrings"])))
        canvas.paint(earring, metal * (1.0 + 0.25 * np.clip((0.17 - fr.v) * 20.0, 0.0, 1.0)), fr.sl)
        canvas.label(pid["ear_r"], earring * fr.not_face, fr.sl)

    # ---- 1 skin, darker towards the outline, with stubble / mustache / beard drawn on it
    rim = np.minimum(k0, 1.0)
    rim *= rim
    rim *= rim
    skin_field = skin * (1.04 - 0.16 * rim)
    fr = full.band(head_rows(0.02, 0.22, 0.5))  # a soft blush on the cheeks
    blush = 1.0 - ((fr.auf - 0.2) * 11.0) ** 2 - ((fr.v - 0.12) * 16.0) ** 2
    band = skin_field[:, :, fr.sl]
    band += (_const_rgb((0.85, 0.35, 0.35)) - band) * (0.12 * np.clip(blush, 0.0, 1.0))
    beard = f["beard"]
    if np.any(beard > th["stubble"]):
        fr = full.band(head_rows(-0.1, 0.6, 0.6))
        amount = np.clip((beard - th["stubble"]) / 0.1, 0.0, 1.0) * 0.3
        amount += _frac(beard, th["full_beard"]) * 0.68
        zone = np.minimum(fr.v - 0.235 + 0.24 * (fr.uf / 0.42) ** 2, fr.v + 0.04)  # sideburns
        zone = np.clip(zone * 25.0, 0.0, 1.0)
        zone *= np.clip(0.93 + 0.1 * noise[:, 0, fr.sl], 0.0, 1.0)  # grain of the hairs
        tm = np.clip(fr.auf / 0.14, 0.0, 1.0)
        must_d = np.abs(fr.v - (0.245 + 0.035 * tm * tm)) - 0.022 * (1.0 - 0.5 * tm)
        must = _cov(np.maximum(must_d, fr.auf - 0.15), ip)
        beard_a = np.maximum(_col(amount) * zone, _col((beard > th["mustache"]) * 0.9) * must)
        band = skin_field[:, :, fr.sl]
        band += (_rgb(hair_rgb * 0.7) - band) * beard_a
    canvas.paint(face, skin_field, full.sl)
    canvas.label(pid["skin"], face, full.sl)

    # ---- 2 nose: a tapered ridge with a round tip, shaded from the light side, nostrils
    fr = full.band(head_rows(-0.02, 0.24, 0.5))
    nw = _col(0.045 + 0.035 * f["nose_size"])
    down = np.clip(fr.v * 5.0, 0.0, 1.0)
    un = fr.uf - (0.07 * sin_yaw) * down
    half_w = nw * (0.35 + 0.65 * down)
    ridge = np.maximum(np.abs(un) - half_w, np.abs(fr.v - 0.10) - 0.10)
    nose = _cov(np.minimum(ridge, _ellipse(un, fr.v - 0.185, nw, 0.042)), ip) * fr.face
    side = np.clip(un / (half_w + 1e-3), -1.0, 1.0)
    nose_shade = 0.98 - 0.10 * side * side + (0.12 * light) * side
    nose_shade -= 0.08 * np.clip((fr.v - 0.15) * 12.0, 0.0, 1.0)
    nose_shade *= 1.0 - 0.5 * _cov(_ellipse(np.abs(un) - nw * 0.5, fr.v - 0.207, 0.022, 0.011), ip)
    canvas.paint(nose, skin * nose_shade, fr.sl)
    canvas.label(pid["nose"], nose, fr.sl)

    # ---- 3 eyeglasses, 4-5 eyes, 6-7 brows share one block of rows
    fr = full.band(head_rows(-0.22, 0.09, 0.5))
    v, auf, right = fr.v, fr.auf, fr.right
    has_glasses = f["glasses"] > th["glasses"]
    if np.any(has_glasses):  # rounded-rectangle rims, a bridge and temples; tinted lenses
        gx = np.abs(auf - _EYE_X) - (0.10 - 0.035)
        gy = np.abs(v - (_EYE_Y + 0.005)) - (0.072 - 0.035)
        gx0, gy0 = np.maximum(gx, 0.0), np.maximum(gy, 0.0)
        rim_d = np.sqrt(gx0 * gx0 + gy0 * gy0)
        rim_d += np.minimum(np.maximum(gx, gy), 0.0) - 0.035
        ft = 0.016
        bridge = np.maximum(auf - (_EYE_X - 0.09), np.abs(v - (_EYE_Y - 0.03)) - ft * 0.8)
        temple = np.abs(auf - (_EYE_X + 0.16)) - 0.07
        temple = np.maximum(temple, np.abs(v - (_EYE_Y - 0.035)) - ft * 0.7)
        frame_d = np.minimum(np.minimum(np.abs(rim_d) - ft, bridge), temple)
        present = _col(has_glasses) * fr.face
        lens = _cov(rim_d, ip) * present
        frame = _cov(frame_d, ip) * present
        canvas.paint(lens * 0.22, _const_rgb((0.80, 0.88, 0.95)), fr.sl)
        canvas.paint(frame, _rgb(_palette(_FRAME, _frac(f["glasses"], th["glasses"]))), fr.sl)
        canvas.label(pid["eye_g"], np.maximum(lens, frame), fr.sl)

    # eyes: almond (two-circle lens) with white, iris, pupil and lash line
    ew = _col(0.066 + 0.022 * f["eye_size"])
    eh = ew * _col(0.22 + 0.36 * f["eye_size"])
    rad = (ew * ew + eh * eh) / (2.0 * eh)
    off = rad - eh
    ex, ey = auf - _EYE_X, v - _EYE_Y
    ex2 = ex * ex
    eye_d = np.maximum(np.sqrt(ex2 + (ey - off) ** 2), np.sqrt(ex2 + (ey + off) ** 2)) - rad
    gaze = _col((f["gaze"] - 0.5) * 2.0) * ew * 0.42
    iris_r = ew * 0.48
    ir = np.sqrt((ex - gaze * (right * _F32(2.0) - _F32(1.0))) ** 2 + (ey + 0.15 * eh) ** 2)
    iris = _cov(ir - iris_r, ip)
    dark = 1.0 - 0.85 * _cov(ir - iris_r * 0.45, ip)  # pupil
    lash = _cov(np.abs(eye_d + 0.012) - 0.012, ip) * np.clip(0.3 - 2.5 * ey / eh, 0.0, 1.0)
    dark *= 1.0 - 0.8 * lash
    sclera = _const_rgb((0.93, 0.92, 0.90))
    eye_field = (sclera + (_rgb(_palette(_IRIS, f["eye_color"])) - sclera) * iris) * dark
    eye = _cov(eye_d, ip) * fr.face
    canvas.paint(eye, eye_field, fr.sl)
    canvas.label(pid["l_eye"], eye * right, fr.sl)
    canvas.label(pid["r_eye"], eye * ~right, fr.sl)

    # brows: arched bands, thick at the inner end
    bw = 0.088
    bx, by = auf - _BROW_X, v - _BROW_Y
    t = np.clip(bx / bw, -1.0, 1.0)
    centre = -0.018 * (1.0 - t * t) + 0.008 * t
    half = _col(0.009 + 0.016 * f["brow_thickness"]) * (1.0 - 0.1 * (t + 1.0) ** 2)
    brow = _cov(np.maximum(np.abs(by - centre) - half, np.abs(bx) - bw), ip) * fr.face
    canvas.paint(brow, _rgb(hair_rgb * 0.75 + 0.02), fr.sl)
    canvas.label(pid["l_brow"], brow * right, fr.sl)
    canvas.label(pid["r_brow"], brow * ~right, fr.sl)

    # ---- 10, 11, 12 mouth interior (with teeth) and lips along a smile curve
    fr = full.band(head_rows(0.1, 0.45, 0.5))
    uf, auf = fr.uf, fr.auf
    mw = _col(0.115 + 0.025 * f["smile"] + 0.01 * f["lip_size"])
    t = np.clip(uf / mw, -1.0, 1.0)
    t2 = t * t
    dv = fr.v - _MOUTH_Y + _col(-0.35 + 1.35 * f["smile"]) * 0.05 * t2
    open_mouth = f["mouth_open"] > th["mouth_open"]
    o = _col(open_mouth * (0.035 + 0.035 * _frac(f["mouth_open"], th["mouth_open"]))) * (1.0 - t2)
    outside = auf - mw
    bow = 1.0 - 0.3 * np.clip(1.0 - np.abs(t) * 4.0, 0.0, 1.0)
    upper_h = _col(0.012 + 0.010 * f["lip_size"]) * (1.0 - t2) * bow
    lower_h = _col(0.015 + 0.013 * f["lip_size"]) * (1.0 - t2)
    upper = _cov(np.maximum(np.abs(dv + o + upper_h) - upper_h, outside), ip) * fr.face
    lower_c = np.abs(dv - o - lower_h)
    lower = _cov(np.maximum(lower_c - lower_h, outside), ip) * fr.face
    interior = _cov(np.maximum(np.abs(dv) - o, outside), ip) * fr.face
    teeth = _cov(np.maximum(dv + 0.35 * o, auf - 0.75 * mw), ip)
    cavity = _const_rgb((0.25, 0.06, 0.07))
    mouth_field = cavity + (_const_rgb((0.90, 0.88, 0.82)) - cavity) * teeth
    # the cavity also runs under the lips, so lips and opening meet without a seam
    canvas.paint(np.maximum(np.maximum(interior, upper), lower), mouth_field, fr.sl)
    canvas.label(pid["mouth"], interior, fr.sl)
    natural = skin_rgb * 0.62 + np.array([0.80, 0.36, 0.38], _F32) * 0.38
    lipstick = np.clip((f["lip_color"] - 0.3) / 0.7, 0.0, 1.0)[:, None]
    lip_rgb = _rgb(natural + (np.array([0.72, 0.06, 0.14], _F32) - natural) * lipstick)
    seam = np.clip(np.abs(dv) * 50.0 + 0.45, 0.0, 1.0)
    canvas.paint(upper, lip_rgb * (0.82 * seam), fr.sl)
    canvas.label(pid["u_lip"], upper, fr.sl)
    seam *= 1.0 + 0.12 * np.clip(1.0 - lower_c / (lower_h + 1e-3), 0.0, 1.0)  # highlight
    canvas.paint(lower, lip_rgb * seam, fr.sl)
    canvas.label(pid["l_lip"], lower, fr.sl)

    # ---- 13 hair in front of the face (forehead and bangs)
    if hair_front is not None:
        canvas.paint(hair_front, hair_field, full.sl)

    # ---- 14 hat: a crown above a brim line plus a flat brim and a band
    has_hat = f["hat"] > th["hat"]
    if np.any(has_hat):
        fr = full.band(head_rows(-0.72, -0.16, 0.62))
        u, v = fr.u, fr.v
        brim_y = -0.30 + 0.05 * (u / 0.45) ** 2
        crown = np.maximum(_ellipse(u, v + 0.07, fw + 0.10, _FACE_TOP + 0.08), v - brim_y)
        brim = _ellipse(u, v - brim_y, fw + 0.14, 0.045)
        hat = _cov(np.minimum(crown, brim), ip) * _col(has_hat)
        hat_shade = 1.0 - 0.3 * _cov(np.abs(v - brim_y + 0.07) - 0.025, ip)
        hat_shade -= 0.25 * _cov(brim, ip)
        canvas.paint(hat, _rgb(_hsv(_frac(f["hat"], th["hat"]), 0.55, 0.55)) * hat_shade, fr.sl)
        canvas.label(pid["hat"], hat, fr.sl)

    # ---- side light, noise, quantisation
    img = canvas.img
    img *= 1.0 + (0.22 * light) * np.clip(full.u / 0.55, -1.0, 1.0)
    noise *= _F32(_NOISE_STD)
    img += noise.transpose(1, 0, 2)
    np.clip(img, 0.0, 1.0, out=img)
    img *= 255.0
    img += 0.5
    images = img.astype(np.uint8).transpose(1, 2, 0).reshape(B, S, S, 3)
    return images, canvas.part_map().reshape(B, S, S)
