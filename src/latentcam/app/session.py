"""One exploration of a trained run: the state behind the browser page, without HTTP.

The page of ``latentcam app`` is Figure 10 of Panday et al. ("Interpretation of Activation
Maps in Generative Models"; a unit nudged by 0.1 ... 0.9 with its heatmap), done by hand:

- an input image x (from the dataset, or uploaded: centre-cropped and resized by the
  loaders' :func:`latentcam.data.imageio.load_image`), its posterior mean mu(x), its
  reconstruction decode(mu), the Grad-CAM map of every latent unit (Liu et al., CVPR 2020)
  and their mean;
- the explored latent z = base + offsets + sum_j t_j s_j w_j: offsets (K,) set by the unit
  sliders; t_j set by the direction sliders, in data standard deviations s_j along the
  direction w_j (:mod:`latentcam.explain.directions`: attribute directions found on the
  run's data at startup, or read from a file); base = mu(x) (after loading a saved z: its z
  minus the moves; Reset goes back to mu(x)); decode(z) (a CVAE decodes with the current
  attribute vector, whose toggles flip attributes); for the chosen unit k (or direction w),
  its Grad-CAM map on the decoded image re-encoded (the paper's "heatmap for each
  iteration"; for a direction the map of the score mu . w,
  :class:`latentcam.explain.targets.LatentDirection`) and its effect map
  |decode(z + d e_k) - decode(z - d e_k)| (for a direction d s w instead of d e_k;
  :func:`latentcam.explain.traversal.effect_maps`);
- a SegVAE's predicted part mask over the face and a per-class Seg-Grad-CAM map
  (Vinogradova et al. 2020, :class:`latentcam.explain.targets.SegClass`).

All model work is done by latentcam's public API; this module keeps the state and encodes
pictures as PNG bytes. It is not thread-safe: the server serialises calls with a lock.

The latent vector is saved as JSON (:meth:`ExplorerSession.z_record`, read back by
:func:`read_z_file` and ``latentcam app RUN --z FILE``)::

    {
      "format": "latentcam-z/1",
      "run": "runs/vae64",            # the run (or checkpoint) it was explored on
      "model": "vae",                 # model kind: vae | cvae | segvae
      "latent_dim": 100,              # K
      "z": [ ... K floats ... ],      # the decoded latent (base + every slider's move)
      "cond": [ ... 40 ... ] | null,  # the CVAE attribute vector in [0, 1], else null
      "offsets": [ ... K floats ... ],# the unit sliders' offsets (0 where untouched)
      "directions": {"Smiling": 1.5}  # optional: the moved direction sliders, in data SDs
    }

A record without ``directions`` (or naming directions this session does not have) loads
with those moves kept inside z: decode(z) is the saved one either way. Every number of a
record is checked (:func:`check_z_record`): ``z`` within +-:data:`Z_LIMIT`, ``offsets``
within +-:data:`OFFSET_LIMIT`, ``cond`` in [0, 1], direction steps within
+-:data:`DIRECTION_LIMIT`; booleans are not numbers.

Every control checks its value before it changes anything, and the server applies each
request to a :meth:`ExplorerSession.copy`, kept only once the new view is computed: a
request that fails leaves the session as it was.
"""

from __future__ import annotations

import io
import json
import logging
import math
import random
from collections.abc import Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from latentcam.checkpoint import LoadedRun
from latentcam.concepts import find_directions, resolve_directions
from latentcam.config import MODEL_KINDS
from latentcam.data.classes import ATTRIBUTE_IDS, ATTRIBUTE_NAMES, PART_NAMES
from latentcam.data.imageio import BadFile, load_image
from latentcam.errors import DataError, InputError
from latentcam.explain.cam import (
    METHODS,
    compute_cams,
    latent_cams,
    normalise,
    upsample,
)
from latentcam.explain.directions import DirectionSet
from latentcam.explain.metrics import units_by_kl
from latentcam.explain.targets import SegClass
from latentcam.explain.traversal import PAPER_STEPS, effect_maps
from latentcam.figures import (
    colorize,
    figure_png_bytes,
    overlay,
    panel_grid,
    to_uint8_hwc,
)
from latentcam.generate import as_pictures, attribute_vector, colorize_labels
from latentcam.models.base import Decoded, kl_per_unit, resolve_layer
from latentcam.models.protocol import has_image_output, has_seg_output, seg_class_count
from latentcam.models.segvae import predicted_labels
from latentcam.runs import open_run_data

log = logging.getLogger(__name__)

Tensor = torch.Tensor

#: Format tag of the saved latent vector (see the module docstring).
Z_FORMAT = "latentcam-z/1"
#: Largest upload accepted, in bytes (checked while reading).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Largest upload accepted, in pixels (checked on the header, before decoding).
MAX_UPLOAD_PIXELS = 40_000_000
#: Sliders move an offset within +-this (in latent units, i.e. prior standard deviations).
OFFSET_LIMIT = 10.0
#: Direction sliders move within +-this many data standard deviations along the direction.
DIRECTION_LIMIT = 10.0
#: A loaded latent vector lies within +-this in every unit (prior standard deviations): the
#: prior is N(0, 1), encodings lie within a few units of 0 and the sliders add at most
#: +-OFFSET_LIMIT, so a z beyond it is nowhere the decoder was trained.
Z_LIMIT = 50.0
#: "Play steps" of a chosen direction, in data standard deviations.
DIRECTION_STEPS = (-2.0, -1.0, 0.0, 1.0, 2.0)
#: Opacity of heatmaps and masks drawn over a face.
OVERLAY_ALPHA = 0.5


class UploadTooLarge(InputError):
    """An upload over :data:`MAX_UPLOAD_BYTES` (the server answers 413)."""


class LiveView(NamedTuple):
    """What one slider move changes, as PNG bytes.

    Attributes:
        unit: the chosen unit k (the last one chosen, also while a direction is).
        offset: its offset.
        decoded: decode(z), the image (or a SegVAE's coloured predicted mask).
        unit_cam: the chosen unit's (or direction's) Grad-CAM map on decode(z) re-encoded,
            over decode(z) (for a model that decodes no image: on the input image;
            ``info()["unit_cam_on"]`` says which).
        effect: |decode(z + d e_k) - decode(z - d e_k)| (a direction: d s w instead of
            d e_k), normalised, colour map "magma".
        effect_max: the largest value of the effect map before normalisation (image units).
        seg_overlay: SegVAE: the predicted part mask of decode(z) over the input, else None.
        direction: the chosen direction's name, or None when a unit is chosen.
        step: that direction's move, in data standard deviations (0 for a unit).
        target: what the maps explain, for captions: "z17" or the direction's name.
    """

    unit: int
    offset: float
    decoded: bytes
    unit_cam: bytes
    effect: bytes
    effect_max: float
    seg_overlay: bytes | None
    direction: str | None = None
    step: float = 0.0
    target: str = ""


class ImageView(NamedTuple):
    """What changes with the input image, as PNG bytes.

    Attributes:
        source: where the image came from ("dataset #3", "upload face.jpg", ...).
        input: the input image.
        recon: decode(mu(x)) with the image's own condition (SegVAE: its coloured mask).
        mean_cam: the mean of the K unit maps (Liu et al.'s overall map) over the input.
        gallery: (unit, PNG) per-unit maps over the input, in ranking order.
        seg_cam: SegVAE: Seg-Grad-CAM of the chosen class over the input, else None.
    """

    source: str
    input: bytes
    recon: bytes
    mean_cam: bytes
    gallery: list[tuple[int, bytes]]
    seg_cam: bytes | None


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 (H, W, 3) array as PNG bytes (fast compression: the page needs speed)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def heat_overlay(picture: Tensor, maps: Tensor) -> np.ndarray:
    """Maps (B, h, w) >= 0, upsampled to the picture (B, 3, H, W), min-max normalised per map
    and drawn with "jet" over it -> uint8 (B, H, W, 3)."""
    height, width = int(picture.shape[-2]), int(picture.shape[-1])
    heat = normalise(upsample(maps.detach().float(), (height, width)), per="map")
    return overlay(picture, heat.cpu(), alpha=OVERLAY_ALPHA)


def mask_overlay(picture: Tensor, seg_logits: Tensor) -> np.ndarray:
    """The predicted part mask of ``seg_logits`` (B, P, H, W), coloured by
    :func:`latentcam.generate.colorize_labels`, blended over ``picture`` (1 or B, 3, H, W) in
    [0, 1] with opacity :data:`OVERLAY_ALPHA` -> uint8 (B, H, W, 3)."""
    labels = predicted_labels(seg_logits)
    colours = colorize_labels(labels, num_classes=max(2, int(seg_logits.shape[1])))
    return overlay(picture, to_uint8_hwc(colours), alpha=OVERLAY_ALPHA)


class _NamedBytes(io.BytesIO):
    """Upload bytes whose repr is the file name (PIL's messages show the file's repr)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.upload_name = name

    def __repr__(self) -> str:
        return repr(self.upload_name)


def image_from_bytes(data: bytes, size: int, name: str = "upload") -> Tensor:
    """An uploaded file as the loaders read images: decoded fully, converted to RGB,
    centre-cropped and resized to ``size`` (:func:`latentcam.data.imageio.load_image`).

    Returns:
        float32 (1, 3, size, size) in [0, 1] (uint8 / 255, as the datasets give).

    Raises:
        UploadTooLarge: more than :data:`MAX_UPLOAD_BYTES` bytes.
        DataError: not a readable image, or more than :data:`MAX_UPLOAD_PIXELS` pixels.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge(
            f"the upload '{name}' has {len(data) / 2**20:.1f} MB; the limit is "
            f"{MAX_UPLOAD_BYTES // 2**20} MB: upload a smaller image"
        )
    if not data:
        raise DataError(f"the upload '{name}' is empty; choose an image file")
    try:
        with Image.open(_NamedBytes(data, name)) as header:  # reads the header only
            width, height = header.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(
            f"the upload '{name}' is not a readable image ({err}); upload a JPEG, PNG, BMP "
            "or WebP file"
        ) from None
    if width * height > MAX_UPLOAD_PIXELS:
        raise DataError(
            f"the upload '{name}' is {width}x{height} pixels; the limit is "
            f"{MAX_UPLOAD_PIXELS // 1_000_000} megapixels: upload a smaller image"
        )
    try:
        pixels, _ = load_image(_NamedBytes(data, name), size)  # type: ignore[arg-type]
    except BadFile as err:
        raise DataError(
            f"the upload '{name}' is not a readable image ({err.reason}); upload a JPEG, "
            "PNG, BMP or WebP file"
        ) from None
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div(255.0)[None]


def read_z_file(path: str | Path) -> dict[str, Any]:
    """Read a latent vector saved by the page (format: see the module docstring).

    Raises:
        InputError: missing or unreadable file, not JSON, or a key missing or malformed.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--z file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(
            f"--z file {path} is not a latent vector saved by latentcam app ({err})"
        ) from None
    return check_z_record(record, str(path))


def is_number(value: Any) -> bool:
    """An int or float that is not a bool (Python's bool is an int: JSON true is not 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_index(value: Any) -> bool:
    """An int that is not a bool (JSON true is not unit 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_number(value: Any, lo: float, hi: float, what: str) -> float:
    """``value`` as a float, checked to be a finite number (not a bool) in [lo, hi].

    Raises:
        InputError: "{what} must be a finite number in [lo, hi], got {value}".
    """
    if not is_number(value) or not math.isfinite(value) or not lo <= value <= hi:
        shown = json.dumps(value) if isinstance(value, bool) else repr(value)
        raise InputError(f"{what} must be a finite number in [{lo:g}, {hi:g}], got {shown}")
    return float(value)


def _floats(
    record: Mapping[str, Any], key: str, length: int, where: str, limit: float
) -> list[float]:
    values = record.get(key)
    if (
        not isinstance(values, list)
        or len(values) != length
        or not all(is_number(v) and math.isfinite(v) and abs(v) <= limit for v in values)
    ):
        raise InputError(
            f"{where}: '{key}' must be a list of {length} finite numbers within +-{limit:g}; "
            "save the vector again from the page"
        )
    return [float(v) for v in values]


def check_z_record(record: Any, where: str = "latent vector") -> dict[str, Any]:
    """Validate a latent vector record (format: see the module docstring); returns it.

    Raises:
        InputError: not an object of that format, lists of the wrong length, or a number
            out of its range (see the module docstring).
    """
    if not isinstance(record, dict) or record.get("format") != Z_FORMAT:
        raise InputError(
            f'{where} is not a latent vector saved by latentcam app (no "format": "{Z_FORMAT}")'
        )
    if record.get("model") not in MODEL_KINDS:
        raise InputError(
            f"{where}: 'model' must be one of {', '.join(MODEL_KINDS)}, got "
            f"{record.get('model')!r}; save the vector again from the page"
        )
    latent_dim: Any = record.get("latent_dim")
    if not is_index(latent_dim) or latent_dim < 1:
        raise InputError(f"{where}: 'latent_dim' must be a positive integer")
    _floats(record, "z", latent_dim, where, Z_LIMIT)
    _floats(record, "offsets", latent_dim, where, OFFSET_LIMIT)
    if record.get("cond") is not None:
        cond = _floats(record, "cond", len(ATTRIBUTE_NAMES), where, 1.0)
        if min(cond) < 0.0:
            raise InputError(f"{where}: 'cond' must hold attributes in [0, 1]")
    moves = record.get("directions")
    if moves is not None and (
        not isinstance(moves, dict)
        or not all(
            is_number(v) and math.isfinite(v) and abs(v) <= DIRECTION_LIMIT for v in moves.values()
        )
    ):
        raise InputError(
            f"{where}: 'directions' must map direction names to steps within "
            f"+-{DIRECTION_LIMIT:g} data standard deviations"
        )
    return record


class ExplorerSession:
    """The state of one exploration of a trained run, and every computation on it.

    Args:
        run: the loaded run (model in eval mode).
        images: float32 (N, 3, H, W) in [0, 1], the dataset images offered (N >= 1).
        attrs: float32 (N, 40) in {0, 1}, their attributes (a CVAE's condition; ignored by
            other models), or None.
        source: a readable name of the run (for the page and the saved vector).
        top: number of sliders (the top units of the ranking), at least 1.
        gallery: number of per-unit maps in the gallery, at least 0.
        layer: explanation layer (default: the model's last encoder conv); checked here.
        method: CAM method (see :data:`latentcam.explain.cam.METHODS`).
        delta: the step d of the effect map, in latent units (for a direction: in data
            standard deviations along it).
        seed: seed of "random image".
        directions: the directions with a slider (their ``scale`` is one data standard
            deviation along each), for the model's K units; None for none.

    Raises:
        InputError: bad ``images``, ``top``, ``gallery``, ``method`` or an unknown ``layer``
            (the message lists close matches).
        DataError: a CVAE without attributes.

    The significance ranking is the KL ranking (:func:`latentcam.explain.metrics.rank_units`
    of :func:`latentcam.models.base.kl_per_unit` over ``images``), the ``by_kl`` ranking
    of ``latentcam evaluate``.
    """

    def __init__(
        self,
        run: LoadedRun,
        images: Tensor,
        attrs: Tensor | None = None,
        *,
        source: str = "",
        top: int = 8,
        gallery: int = 16,
        layer: str | None = None,
        method: str = "gradcam",
        delta: float = 3.0,
        seed: int = 0,
        directions: DirectionSet | None = None,
    ) -> None:
        if images.dim() != 4 or images.shape[0] < 1:
            raise InputError(f"images must be (N, 3, H, W) with N >= 1, got {tuple(images.shape)}")
        if top < 1:
            raise InputError(f"top must be at least 1 slider, got {top}")
        if gallery < 0:
            raise InputError(f"gallery must be 0 or more per-unit maps, got {gallery}")
        if method not in METHODS:
            raise InputError(f"unknown CAM method '{method}'; choose one of: {', '.join(METHODS)}")
        self.run = run
        self.model = run.model.eval()
        self.kind = run.config.model.kind
        self.device = next(self.model.parameters()).device
        self.images = images.to(self.device)
        conditional = self.model.cond_dim > 0
        self.attrs = attrs.to(self.device).float() if conditional and attrs is not None else None
        if self.model.cond_dim > 0 and self.attrs is None:
            raise DataError(
                "this run is a CVAE conditioned on the 40 CelebA attributes, but the images "
                "come without attributes; use a dataset with attributes"
            )
        self.source = source or str(run.run_dir or run.checkpoint_path)
        self.layer, _ = resolve_layer(self.model, layer)  # an unknown name fails here
        self.method = method
        self.delta = float(delta)
        self._rng = random.Random(seed)
        with torch.no_grad():
            mu, logvar = self.model.encode(self.images, self.attrs)
        self.latent_dim = int(mu.shape[1])
        self.kl = kl_per_unit(mu, logvar).cpu()  # (K,)
        self.ranking: list[int] = units_by_kl(mu, logvar)
        self.top = min(top, self.latent_dim)
        self.gallery_size = min(gallery, self.latent_dim)
        self.units: list[int] = self.ranking[: self.top]  # units with a slider
        self.unit = self.units[0]
        self.directions = DirectionSet([], self.latent_dim) if directions is None else directions
        if self.directions.latent_dim != self.latent_dim:
            raise InputError(
                f"the directions are for K={self.directions.latent_dim} latent units; this "
                f"model has K={self.latent_dim}: find directions on this run"
            )
        self._dir_vectors = self.directions.vectors.to(self.device)  # (T, K)
        self._dir_moves = self.directions.displacements.to(self.device)  # (T, K) one data SD
        self.direction: str | None = None  # the chosen direction (None: the unit is)
        self.seg_class = self._default_seg_class()
        self.select_image(0)

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(
        cls,
        run: str | Path | LoadedRun,
        data: str | Path | None = None,
        n: int = 64,
        split: str = "val",
        directions: DirectionSet | str | Path | None = None,
        names: list[str] | None = None,
        **options: Any,
    ) -> ExplorerSession:
        """Load a run and ``n`` images of ``split`` of its data (or ``data``).

        Args:
            directions: the direction sliders: a :class:`DirectionSet`, or what
                ``--directions`` takes (a ``directions.npz`` or vector file, or a finder name
                such as ``attributes``; :func:`latentcam.concepts.resolve_directions`), or
                None: the attribute directions of the run's training split when the data has
                attributes (:func:`latentcam.concepts.find_directions`), else none.
            names: keep only these directions (in this order).
            options: the other arguments of :class:`ExplorerSession`.

        Raises:
            CheckpointError, DataError, InputError: see :func:`latentcam.runs.open_run_data`;
                an unreadable directions file, an unknown name, directions of another width.
        """
        batch = open_run_data(run, data=data, n=n, split=split, progress=False)
        source = str(run) if not isinstance(run, LoadedRun) else ""
        if isinstance(directions, DirectionSet):
            found = directions.select(names)
        elif directions is not None:
            found = resolve_directions(str(directions), batch.run, data, names, progress=False)
        elif batch.attrs is not None:
            found = find_directions(batch.run, data, ("attributes",), names=names, progress=False)
        else:
            if names:
                raise InputError(
                    "--names picks attribute directions, but this data has no attributes; "
                    "give a directions file with --directions"
                )
            found = None
        return cls(batch.run, batch.images, batch.attrs, source=source, directions=found, **options)

    def copy(self) -> ExplorerSession:
        """A copy to try a change on: it shares what never changes (the run and model, the
        dataset images and attributes, the directions, the KL ranking, the cached unit maps
        of the input, which are replaced and never changed in place) and owns a copy of
        everything else (offsets, steps, condition, chosen unit, image, random state), so
        that nothing done to it reaches this session.

        The server applies each request to a copy and keeps the copy only once the new view
        is computed.
        """
        shared = (
            self.run,
            self.model,
            self.images,
            self.attrs,
            self.directions,
            self._dir_vectors,
            self._dir_moves,
            self.kl,
            self._input_cams,
        )
        return deepcopy(self, memo={id(thing): thing for thing in shared if thing is not None})

    # ------------------------------------------------------------------ info

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def seg_classes(self) -> list[str]:
        """Names of the segmentation classes (empty for a model without segmentation)."""
        if not has_seg_output(self.model):
            return []
        count = seg_class_count(self.model)
        return ["mask"] if count == 1 else list(PART_NAMES[:count])

    def _default_seg_class(self) -> int:
        names = self.seg_classes
        return names.index("mouth") if "mouth" in names else 0

    def info(self) -> dict[str, Any]:
        """Model and session facts for the page (JSON-able)."""
        return {
            "run": self.source,
            "checkpoint": str(self.run.checkpoint_path),
            "model": self.kind,
            "latent_dim": self.latent_dim,
            "image_size": int(self.images.shape[-1]),
            "num_images": self.num_images,
            "ranking": self.ranking,
            "ranking_source": "KL per unit over the dataset images (evaluate's by_kl)",
            "kl": [round(float(v), 4) for v in self.kl],
            "units": list(self.units),
            "unit": self.unit,
            "offsets": [round(float(v), 4) for v in self.offsets],
            # direction sliders: name, kind, one data SD along w, and the held-out score
            "directions": [
                {
                    "name": d.name,
                    "kind": d.kind,
                    "scale": float(d.scale),
                    "parts": list(d.parts),
                    "auroc": d.scores.get("auroc"),
                }
                for d in self.directions
            ],
            "direction_steps": [round(float(v), 4) for v in self.direction_steps],
            "direction": self.direction,
            "direction_limit": DIRECTION_LIMIT,
            "direction_play": list(DIRECTION_STEPS),
            "attributes": list(ATTRIBUTE_NAMES) if self.cond is not None else [],
            "cond": None if self.cond is None else [float(v) for v in self.cond[0]],
            "seg_classes": self.seg_classes,
            "seg_class": self.seg_class,
            "steps": list(PAPER_STEPS),
            "offset_limit": OFFSET_LIMIT,
            "delta": self.delta,
            "layer": self.layer,
            "method": self.method,
            # where the chosen unit's map is computed: "decoded" (decode(z) re-encoded) or
            # "input" (a SegVAE that decodes no image)
            "unit_cam_on": "input" if self._no_image() else "decoded",
        }

    # ------------------------------------------------------------------ image choice

    def _set_image(self, image: Tensor, cond: Tensor | None, source: str) -> None:
        self.image = image.to(self.device)  # (1, 3, H, W)
        self.image_cond = cond  # (1, 40) condition the image is encoded with, or None
        self.cond = None if cond is None else cond.clone()  # current (toggled) condition
        self.image_source = source
        with torch.no_grad():
            mu, _ = self.model.encode(self.image, self.image_cond)
        self.mu = mu  # (1, K): the posterior mean of the input; the reconstruction decodes it
        self.base = mu.clone()  # (1, K): z = base + offsets; mu, or z - offsets of a loaded z
        self.offsets = torch.zeros(self.latent_dim, device=self.device)
        self.direction_steps = torch.zeros(len(self.directions), device=self.device)  # (T,)
        self._input_cams: Tensor | None = None

    def select_image(self, index: int) -> None:
        """Explore dataset image ``index`` (0..N-1); offsets and attributes are reset."""
        if not is_index(index) or not 0 <= index < self.num_images:
            raise InputError(
                f"image index {json.dumps(index) if isinstance(index, bool) else index} is out "
                f"of range: the dataset part loaded has images 0..{self.num_images - 1}"
            )
        i = int(index)
        cond = None if self.attrs is None else self.attrs[i : i + 1]
        self._set_image(self.images[i : i + 1], cond, f"dataset #{i}")
        self.index: int | None = i

    def select_random(self) -> int:
        """Explore a random dataset image (another one than now when N > 1); its index."""
        choices = [i for i in range(self.num_images) if i != self.index] or [0]
        index = self._rng.choice(choices)
        self.select_image(index)
        return index

    def upload(self, data: bytes, name: str = "upload") -> None:
        """Explore an uploaded image file (bytes), cropped and resized like the loaders'.

        A CVAE encodes it with the training attribute means (zeros when unknown).

        Raises:
            UploadTooLarge, DataError: see :func:`image_from_bytes`.
        """
        image = image_from_bytes(data, int(self.images.shape[-1]), name)
        cond = None
        if self.model.cond_dim > 0:
            cond = attribute_vector(None, base=self.run.attr_means).to(self.device)[None]
        self._set_image(image, cond, f"upload {name}")
        self.index = None

    # ------------------------------------------------------------------ controls

    def _check_unit(self, unit: int) -> int:
        if not is_index(unit) or not 0 <= unit < self.latent_dim:
            shown = json.dumps(unit) if isinstance(unit, bool) else unit
            raise InputError(
                f"latent unit {shown} is out of range: the model has units 0..{self.latent_dim - 1}"
            )
        return unit

    def select_unit(self, unit: int) -> None:
        """Make ``unit`` the chosen unit (maps and effect map); it gets a slider."""
        self.unit = self._check_unit(unit)
        self.direction = None
        if unit not in self.units:
            self.units.append(unit)

    def _direction_index(self, name: str) -> int:
        names = self.directions.names
        if not isinstance(name, str) or name not in names:
            raise InputError(
                f"no direction named {name!r}; this session has: {', '.join(names) or '(none)'}"
            )
        return names.index(name)

    def select_direction(self, name: str) -> None:
        """Make direction ``name`` the chosen one (maps and effect map)."""
        self._direction_index(name)
        self.direction = name

    def set_direction(self, name: str, value: float) -> None:
        """Move along direction ``name`` by ``value`` data standard deviations (and choose
        it): z = base + offsets + value * m, m = the direction's displacement (one data SD of
        its score, along its activation pattern), plus the other directions' moves.

        Raises:
            InputError: an unknown name, or a value that is not finite or beyond
                +-:data:`DIRECTION_LIMIT`; the state is then unchanged.
        """
        index = self._direction_index(name)
        step = check_number(
            value,
            -DIRECTION_LIMIT,
            DIRECTION_LIMIT,
            f"the step along direction {name} (in data standard deviations)",
        )
        self.direction = name
        self.direction_steps[index] = step

    def set_offset(self, unit: int, value: float) -> None:
        """Set the offset of ``unit`` (and choose it): z_unit = base_unit + value.

        Raises:
            InputError: a unit out of range or a value that is not finite or beyond
                +-:data:`OFFSET_LIMIT`; the state is then unchanged.
        """
        self._check_unit(unit)
        offset = check_number(value, -OFFSET_LIMIT, OFFSET_LIMIT, f"the offset of unit {unit}")
        self.select_unit(unit)
        self.offsets[unit] = offset

    def set_attribute(self, name: str, value: float) -> None:
        """CVAE: set attribute ``name`` (one of the 40 CelebA names) of the decoding condition
        to ``value`` in [0, 1]; mu (the encoding of the input) is unchanged."""
        if self.cond is None:
            raise InputError("attributes apply to a CVAE; this model takes no attributes")
        if name not in ATTRIBUTE_IDS:
            raise InputError(f"unknown attribute '{name}'; the 40 CelebA attributes are listed")
        self.cond[0, ATTRIBUTE_IDS[name]] = check_number(value, 0.0, 1.0, f"attribute {name}")

    def set_seg_class(self, cls: int) -> None:
        """SegVAE: the class of the Seg-Grad-CAM map."""
        names = self.seg_classes
        if not names:
            raise InputError("Seg-Grad-CAM classes apply to a segvae model")
        if not is_index(cls) or not 0 <= cls < len(names):
            shown = json.dumps(cls) if isinstance(cls, bool) else cls
            raise InputError(f"class {shown} is out of range: 0..{len(names) - 1}")
        self.seg_class = cls

    def reset(self) -> None:
        """Back to the input: z = mu(x) (also after a loaded z), offsets zero, the condition
        the image's own."""
        self.base = self.mu.clone()
        self.offsets.zero_()
        self.direction_steps.zero_()
        self.cond = None if self.image_cond is None else self.image_cond.clone()

    # ------------------------------------------------------------------ computations

    def direction_shift(self) -> Tensor:
        """The direction sliders' move sum_j t_j s_j w_j, (K,) (zeros without directions)."""
        if not len(self.directions):
            return torch.zeros(self.latent_dim, device=self.device)
        return self.direction_steps @ self._dir_moves

    def z(self) -> Tensor:
        """The explored latent (1, K): base + offsets + the direction moves (base = mu(x)
        unless a z was loaded)."""
        return self.base + self.offsets[None] + self.direction_shift()[None]

    @torch.no_grad()
    def decode(self) -> Decoded:
        """decode(z) with the current condition."""
        return self.model.decode(self.z(), self.cond)

    @torch.no_grad()
    def reconstruction(self) -> Decoded:
        """decode(mu(x)) with the image's own condition (also after a loaded z)."""
        return self.model.decode(self.mu, self.image_cond)

    def input_cams(self) -> Tensor:
        """Grad-CAM maps of all K units on the input, (1, K, h, w), unnormalised (cached)."""
        if self._input_cams is None:
            result = latent_cams(
                self.model, self.image, self.image_cond, layer=self.layer, method=self.method
            )
            self._input_cams = result.maps
        return self._input_cams

    def unit_cam(self, picture: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The chosen unit's Grad-CAM map on decode(z) re-encoded (with the current condition);
        when a direction is chosen, the map of its score mu . w (``LatentDirection``).

        For a model that decodes no image, the map of the input image instead.

        Returns:
            (the explained picture (1, 3, H, W) in [0, 1], map (1, h, w) unnormalised).
        """
        if self._no_image():
            explained, cond = self.image, self.image_cond
        else:
            explained = as_pictures(self.decode()) if picture is None else picture
            cond = self.cond
        if self.direction is not None:
            target = self.directions[self.direction].target
            result = compute_cams(
                self.model, explained, [target], cond, layer=self.layer, method=self.method
            )
        else:
            result = latent_cams(
                self.model, explained, cond, units=[self.unit], layer=self.layer, method=self.method
            )
        return explained, result.maps[:, 0]

    def _no_image(self) -> bool:
        return not has_image_output(self.model)

    def unit_effect(self) -> Tensor:
        """|decode(z + d e_k) - decode(z - d e_k)| of the chosen unit k, (1, H, W); for a
        chosen direction w with data spread s, d s w instead of d e_k."""
        if self.direction is not None:
            index = self._direction_index(self.direction)
            row = self._dir_moves[index][None]  # (1, K)
            effects = effect_maps(
                self.model, self.z(), delta=self.delta, cond=self.cond, directions=row
            )
        else:
            effects = effect_maps(
                self.model, self.z(), [self.unit], delta=self.delta, cond=self.cond
            )
        return effects[:, 0]

    def target_label(self) -> tuple[str, float]:
        """What the maps explain ("z17" or a direction's name) and its move (an offset in
        latent units, or a step in data standard deviations)."""
        if self.direction is not None:
            index = self._direction_index(self.direction)
            return self.direction, float(self.direction_steps[index])
        return f"z{self.unit}", float(self.offsets[self.unit])

    def seg_cam(self) -> Tensor:
        """SegVAE: Seg-Grad-CAM of the chosen class over its predicted region on the input,
        (1, h, w) unnormalised (Vinogradova et al. 2020)."""
        name = self.seg_classes[self.seg_class]
        target = SegClass(self.seg_class, class_name=name)
        result = compute_cams(
            self.model, self.image, [target], self.image_cond, self.layer, self.method
        )
        return result.maps[:, 0]

    # ------------------------------------------------------------------ views

    def live_view(self) -> LiveView:
        """decode(z), the chosen unit's Grad-CAM on it and its effect map, as PNG bytes."""
        decoded = self.decode()
        picture = as_pictures(decoded)  # (1, 3, H, W)
        explained, cam = self.unit_cam(picture)
        effect = self.unit_effect()  # (1, H, W)
        effect_max = float(effect.max())
        effect_png = png_bytes(colorize(normalise(effect, per="map")[0].cpu(), cmap="magma"))
        seg_overlay = None
        if decoded.seg_logits is not None:
            seg_overlay = png_bytes(mask_overlay(self.image, decoded.seg_logits)[0])
        target, _ = self.target_label()
        step = (
            0.0
            if self.direction is None
            else float(self.direction_steps[self._direction_index(self.direction)])
        )
        return LiveView(
            unit=self.unit,
            offset=float(self.offsets[self.unit]),
            decoded=png_bytes(to_uint8_hwc(picture)[0]),
            unit_cam=png_bytes(heat_overlay(explained, cam)[0]),
            effect=effect_png,
            effect_max=effect_max,
            seg_overlay=seg_overlay,
            direction=self.direction,
            step=step,
            target=target,
        )

    def image_view(self) -> ImageView:
        """The input, its reconstruction, the averaged map and the gallery, as PNG bytes."""
        cams = self.input_cams()  # (1, K, h, w)
        shown, tiles = self._gallery_tiles(cams)
        return ImageView(
            source=self.image_source,
            input=png_bytes(to_uint8_hwc(self.image)[0]),
            recon=png_bytes(to_uint8_hwc(as_pictures(self.reconstruction()))[0]),
            mean_cam=png_bytes(heat_overlay(self.image, cams.mean(dim=1))[0]),
            gallery=[(unit, png_bytes(tile)) for unit, tile in zip(shown, tiles, strict=True)],
            seg_cam=png_bytes(heat_overlay(self.image, self.seg_cam())[0])
            if self.seg_classes
            else None,
        )

    def _gallery_tiles(self, cams: Tensor) -> tuple[list[int], np.ndarray]:
        """The gallery: the first ``gallery`` units of the ranking and their maps (from
        ``cams`` (1, K, h, w)) over the input, uint8 (G, H, W, 3)."""
        shown = self.ranking[: self.gallery_size]
        if not shown:
            height, width = int(self.image.shape[-2]), int(self.image.shape[-1])
            return shown, np.zeros((0, height, width, 3), np.uint8)
        tiles = heat_overlay(self.image.expand(len(shown), -1, -1, -1), cams[0, shown])
        return shown, tiles

    def figure(self) -> Any:
        """The current view as one labelled matplotlib figure
        (:func:`latentcam.figures.panel_grid`).

        Row 1: input, reconstruction, mean Grad-CAM, decoded z, the chosen unit's Grad-CAM,
        its effect map (SegVAE: and the predicted parts, the Seg-Grad-CAM map). Then the
        gallery, as many tiles per row as row 1 has panels, each marked with its unit.
        """
        cams = self.input_cams()
        decoded = self.decode()
        picture = as_pictures(decoded)
        explained, cam = self.unit_cam(picture)
        effect = normalise(self.unit_effect(), per="map")
        where = "input" if self._no_image() else "re-encoded"
        target, move = self.target_label()
        if self.direction is None:
            moved, named = f"{target}{move:+.2f}", f"unit {self.unit}"
            step = f"d={self.delta:g}"
        else:
            moved, named, step = f"{target} {move:+.2f} sd", target, f"d={self.delta:g} sd"
        cells = [
            to_uint8_hwc(self.image)[0],
            to_uint8_hwc(as_pictures(self.reconstruction()))[0],
            heat_overlay(self.image, cams.mean(dim=1))[0],
            to_uint8_hwc(picture)[0],
            heat_overlay(explained, cam)[0],
            colorize(effect[0].cpu(), cmap="magma"),
        ]
        labels = [
            "input",
            "reconstruction",
            "mean Grad-CAM",
            f"decoded ({moved})",
            f"Grad-CAM {named} ({where})",
            f"effect {named} ({step})",
        ]
        if decoded.seg_logits is not None:
            cells.append(mask_overlay(self.image, decoded.seg_logits)[0])
            labels.append("predicted parts")
            cells.append(heat_overlay(self.image, self.seg_cam())[0])
            labels.append(f"Seg-Grad-CAM {self.seg_classes[self.seg_class]}")
        columns = len(cells)
        shown, tiles = self._gallery_tiles(cams)
        rows = [cells] + [list(tiles[i : i + columns]) for i in range(0, len(shown), columns)]
        row_labels = ["view"] + ["gallery"] * (len(rows) - 1)
        fig = panel_grid(
            rows,
            col_labels=labels,
            row_labels=row_labels if len(rows) > 1 else None,
            title=f"{self.source}: {self.image_source}",
        )
        axes = fig.axes  # row-major, as panel_grid made them (the colour bar comes last)
        for i, unit in enumerate(shown):
            ax = axes[columns * (1 + i // columns) + i % columns]
            ax.text(
                1,
                1,
                f"z{unit}",
                color="white",
                fontsize=7,
                va="top",
                ha="left",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "edgecolor": "none"},
            )
        return fig

    def figure_png(self) -> bytes:
        """The current view (:meth:`figure`) as PNG bytes."""
        return figure_png_bytes(self.figure())

    # ------------------------------------------------------------------ latent vector

    def z_record(self) -> dict[str, Any]:
        """The current latent vector as a JSON-able dict (format: module docstring)."""
        return {
            "format": Z_FORMAT,
            "run": self.source,
            "model": self.kind,
            "latent_dim": self.latent_dim,
            "z": [float(v) for v in self.z()[0]],
            "cond": None if self.cond is None else [float(v) for v in self.cond[0]],
            "offsets": [float(v) for v in self.offsets],
            "directions": {
                name: float(step)
                for name, step in zip(self.directions.names, self.direction_steps, strict=True)
                if float(step) != 0.0
            },
        }

    def apply_z(self, record: Mapping[str, Any], where: str = "latent vector") -> None:
        """Start from a saved latent vector: z and offsets (and a CVAE's condition) as saved.

        The input image and mu(x) stay (the reconstruction is still decode(mu)); the base of
        z becomes ``z`` minus the saved moves, so that decode(z) is the saved one and the
        sliders show the saved offsets (and direction steps, when this session has every
        direction the record names; else those moves stay inside the base).
        :meth:`reset` goes back to z = mu(x).

        Raises:
            InputError: a malformed record, or one of another model kind or latent size.
        """
        check_z_record(dict(record), where)
        if record["model"] != self.kind:
            raise InputError(
                f"{where} was saved from a {record.get('model')} model; this run is a {self.kind}"
            )
        if record["latent_dim"] != self.latent_dim:
            raise InputError(
                f"{where} has latent_dim {record['latent_dim']}; this model has "
                f"{self.latent_dim} units"
            )
        z = torch.tensor(record["z"], dtype=torch.float32, device=self.device)
        offsets = torch.tensor(record["offsets"], dtype=torch.float32, device=self.device)
        moves = record.get("directions") or {}
        steps = torch.zeros(len(self.directions), device=self.device)
        if all(name in self.directions.names for name in moves):  # steps: checked above
            for name, value in moves.items():
                steps[self._direction_index(name)] = float(value)
        self.direction_steps = steps
        self.base = (z - offsets)[None] - self.direction_shift()[None]
        self.offsets = offsets
        if self.cond is not None and record.get("cond") is not None:
            self.cond = torch.tensor(record["cond"], device=self.device)[None]
        moved = [int(k) for k in torch.nonzero(offsets).flatten()]
        for unit in moved:
            if unit not in self.units:
                self.units.append(unit)
        if moved:
            self.unit = moved[0]
        steered = [int(j) for j in torch.nonzero(steps).flatten()]
        self.direction = self.directions.names[steered[0]] if steered and not moved else None
        self.image_source += f" (z from {where})"
