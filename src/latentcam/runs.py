"""Open a trained run together with the images it should be explained on.

Every run-level command (explain, traverse, evaluate, report, the app) starts the same way:
load the model from a checkpoint or run folder, read ``n`` images of a split of the run's
own dataset (or another one given by the user) at the size the model was built for, and
build the CVAE condition from the images' attributes. :func:`open_run_data` does that once;
:func:`open_data` (a run's dataset with its split settings) serves it and the training data
module alike. Nothing here imports Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from latentcam.checkpoint import LoadedRun, check_image_size, load_run
from latentcam.config import RunConfig
from latentcam.data.dataset import FaceData, FaceDataset, load_face_data
from latentcam.errors import DataError, InputError
from latentcam.io import check_output
from latentcam.models.base import eval_mode
from latentcam.models.protocol import is_conditional


def open_data(cfg: RunConfig, path: str | Path | None = None, progress: bool = True) -> FaceData:
    """The dataset of a run, at the model's image size, with the run's split settings.

    Args:
        cfg: the run config (``data.*``, ``model.image_size``, ``train.seed``).
        path: a dataset path instead of ``cfg.data.path`` (e.g. ``reconstruct --data``).
    """
    dcfg = cfg.data
    return load_face_data(
        dcfg.path if path is None else path,
        cfg.model.image_size,
        cache_dir=dcfg.cache_dir or None,
        seed=cfg.train.seed,
        val_fraction=dcfg.val_fraction,
        test_fraction=dcfg.test_fraction,
        synth_n=dcfg.synth_n,
        synth_seed=dcfg.synth_seed,
        skip_bad=dcfg.skip_bad,
        progress=progress,
    )


class RunData(NamedTuple):
    """A loaded run and a batch of its data.

    Attributes:
        run: the model (eval mode) and its config.
        images: float32 (N, 3, H, W) in [0, 1].
        cond: float32 (N, 40) attributes in {0, 1} for a CVAE, else None.
        parts: int64 (N, H, W) part ids 0..18 where the data has masks, else None.
        attrs: float32 (N, 40) in {0, 1} where the data has attributes, else None.
        factors: float32 (N, F) ground-truth factors (synthetic faces), else None.
        factor_names: the F factor names.
        data_path: the dataset that was read.
        split: the split the images come from.
    """

    run: LoadedRun
    images: torch.Tensor
    cond: torch.Tensor | None
    parts: torch.Tensor | None
    attrs: torch.Tensor | None
    factors: torch.Tensor | None
    factor_names: tuple[str, ...]
    data_path: str
    split: str


def open_run_data(
    run: str | Path | LoadedRun,
    data: str | Path | None = None,
    n: int = 16,
    split: str = "val",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> RunData:
    """Load a run and the first ``n`` images of ``split`` of its data.

    Args:
        run: a run folder, a ``.ckpt`` file, or an already loaded run.
        data: a dataset path (any supported layout, or ``"synth"``); default: the dataset the
            run was trained on (its config's ``data.path``).
        n: how many images (fewer if the split is smaller).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        cache_dir: where decoded arrays are cached (default: the run's config, then
            ``$LATENTCAM_CACHE``, then ``~/.cache/latentcam``).

    Raises:
        CheckpointError, DataError, InputError: unreadable run or data, a CVAE with data that
            has no attributes, ``n < 1``.
    """
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    cfg = loaded.config
    path = str(data) if data is not None else cfg.data.path
    face_data = open_data(cfg, data, progress=progress)
    check_image_size(cfg.model, face_data.size)
    dataset = FaceDataset(face_data, split=split)
    if len(dataset) == 0:
        raise DataError(f"split '{split}' of {path} is empty; choose another split (--split all)")
    batch = dataset.batch(np.arange(min(n, len(dataset))))
    device = next(loaded.model.parameters()).device
    attrs = batch.get("attrs")
    cond = None
    if is_conditional(loaded.model):
        if attrs is None:
            raise DataError(
                f"this run is a CVAE conditioned on the 40 CelebA attributes, but {path} has no "
                "attribute file; use a dataset with attributes (CelebA, CelebAMask-HQ, synth)"
            )
        cond = attrs.to(device)
    return RunData(
        run=loaded,
        images=batch["image"].to(device),
        cond=cond,
        parts=batch.get("parts"),
        attrs=attrs,
        factors=batch.get("factors"),
        factor_names=tuple(face_data.factor_names),
        data_path=path,
        split=split,
    )


def check_run_output(
    out: str | Path,
    run: LoadedRun,
    data: str | Path | None = None,
    *more: str | Path | None,
    what: str = "--out",
) -> Path:
    """:func:`latentcam.io.check_output` for a command that reads ``run`` and ``data`` (default:
    the run's own dataset) and the files ``more``: refuses an ``out`` that would overwrite any
    of them or the files of a run. Returns ``out`` as a Path.

    Raises:
        InputError: ``out`` is, lies inside or contains an input, or hits a run's own files.
    """
    location = run.run_dir if run.run_dir is not None else run.checkpoint_path
    source = data if data is not None else run.config.data.path
    return check_output(out, [location, run.checkpoint_path, source, *more], what=what)


class Latents(NamedTuple):
    """The posterior means of a split of a run's data, with the labels they can be read
    against (for finding latent directions).

    Attributes:
        mu: float32 (N, K) on the CPU.
        attrs: float32 (N, 40) in {0, 1}, or None.
        factors: float32 (N, F), or None.
        factor_names: the F factor names.
        split: the split encoded.
    """

    mu: torch.Tensor
    attrs: torch.Tensor | None
    factors: torch.Tensor | None
    factor_names: tuple[str, ...]
    split: str


def encode_run_data(
    run: str | Path | LoadedRun,
    data: str | Path | None = None,
    split: str = "train",
    max_images: int = 4000,
    batch_size: int = 256,
    progress: bool = True,
) -> Latents:
    """mu of the first ``max_images`` images of ``split`` (in batches, never all at once).

    Raises:
        CheckpointError, DataError, InputError: as :func:`open_run_data`; an empty split.
    """
    from tqdm.auto import tqdm

    if max_images < 1:
        raise InputError(f"max_images must be at least 1, got {max_images}")
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    cfg = loaded.config
    face_data = open_data(cfg, data, progress=progress)
    check_image_size(cfg.model, face_data.size)
    dataset = FaceDataset(face_data, split=split)
    count = min(len(dataset), max_images)
    if count == 0:
        path = str(data) if data is not None else cfg.data.path
        raise DataError(f"split '{split}' of {path} is empty; choose another split")
    model = loaded.model
    device = next(model.parameters()).device
    mus, attrs, factors = [], [], []
    conditional = int(getattr(model, "cond_dim", 0) or 0) > 0
    with eval_mode(model), torch.no_grad():
        for start in tqdm(
            range(0, count, batch_size), desc=f"encode {split}", disable=not progress, leave=False
        ):
            batch = dataset.batch(np.arange(start, min(start + batch_size, count)))
            a = batch.get("attrs")
            if conditional and a is None:
                raise DataError(
                    "this run is a CVAE conditioned on the 40 CelebA attributes, but its data has "
                    "no attribute file; use a dataset with attributes (CelebA, CelebAMask-HQ, synth)"
                )
            cond = a.to(device) if conditional and a is not None else None
            mu, _ = model.encode(batch["image"].to(device), cond)
            mus.append(mu.float().cpu())
            if a is not None:
                attrs.append(a.float())
            if batch.get("factors") is not None:
                factors.append(batch["factors"].float())
    return Latents(
        mu=torch.cat(mus),
        attrs=torch.cat(attrs) if attrs else None,
        factors=torch.cat(factors) if factors else None,
        factor_names=tuple(face_data.factor_names),
        split=split,
    )


def parse_unit_ranges(text: str | None) -> list[range] | None:
    """Parse ``"0,3,42"`` (or ``"0-9"`` ranges) into ranges of unit indices, without expanding
    them (``0-300000000`` costs nothing here); None for no choice (``None``, ``""``, ``auto``).

    Raises:
        InputError: a part that is not an index or a range, a negative index, or a range
            whose end lies before its start.
    """
    if text is None or text.strip() in ("", "auto"):
        return None
    ranges: list[range] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = (int(v) for v in part.split("-", 1))
            else:
                lo = hi = int(part)
        except ValueError:
            raise InputError(
                f"--units: '{part}' is not a unit index or range (e.g. 0,3,42 or 0-9)"
            ) from None
        if lo < 0 or hi < 0:
            raise InputError(f"--units: unit {min(lo, hi)} is negative; units are numbered from 0")
        if hi < lo:
            raise InputError(f"--units: range '{part}' ends before it starts; write {hi}-{lo}")
        ranges.append(range(lo, hi + 1))
    return ranges


def parse_units(text: str | None, num_units: int) -> list[int] | None:
    """Parse ``"0,3,42"`` (or ``"0-9"`` ranges) into unit indices of a model with
    ``num_units`` units; each range is checked against the model before it is expanded.

    Raises:
        InputError: as :func:`parse_unit_ranges`, or a unit out of range.
    """
    ranges = parse_unit_ranges(text)
    if ranges is None:
        return None
    for r in ranges:
        if r[-1] >= num_units:
            what = f"unit {r[0]}" if len(r) == 1 else f"range {r[0]}-{r[-1]}"
            raise InputError(
                f"--units: {what} is out of range; this model has units 0..{num_units - 1}"
            )
    return [u for r in ranges for u in r]


def parse_floats(text: str | None, what: str) -> list[float] | None:
    """Parse ``"0.1,0.5,0.9"`` into floats (None when not given)."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what}: '{text}' is not a comma-separated list of numbers") from None
    if not values or not all(np.isfinite(values)):
        raise InputError(f"{what}: give at least one finite number, got '{text}'")
    return values
