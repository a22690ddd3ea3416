"""Self-describing checkpoints: the resolved config travels inside every ``.ckpt``.

A checkpoint written by :func:`latentcam.training.train.train` is a Lightning checkpoint
with one more entry, ``checkpoint["latentcam"]`` (see :func:`checkpoint_payload`): the
resolved :class:`~latentcam.config.RunConfig` as a plain dict, the package version and a
format number. :func:`load_model` therefore needs nothing but the file (or the run folder
that holds it) to rebuild the model, as pythae's self-describing checkpoints do.

This module imports torch only (not Lightning), so ``latentcam.load_model`` stays light.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch

from latentcam.config import (
    CVAEConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    SegVAEConfig,
    VAEConfig,
    load_config,
    to_dict,
)
from latentcam.errors import CheckpointError, ConfigError, InputError
from latentcam.io import TENSORS_ONLY, broken_link, pickled_objects
from latentcam.models.base import GenerativeModel
from latentcam.models.protocol import (
    LatentModel,
    has_image_output,
    has_seg_output,
    is_conditional,
    seg_class_count,
)
from latentcam.models.registry import build_model
from latentcam.models.saved import is_adapter_run, load_adapted, read_spec, state_diff

log = logging.getLogger(__name__)

#: Key of latentcam's own entry in a Lightning checkpoint dict.
CHECKPOINT_KEY = "latentcam"
#: Bumped when the layout of ``checkpoint["latentcam"]`` changes incompatibly.
FORMAT_VERSION = 1
#: Prefix of the pure model's parameters in the LightningModule's state dict.
MODEL_PREFIX = "model."
#: Checkpoint files looked for, in order, when a run folder is given.
RUN_CHECKPOINTS = ("best.ckpt", "last.ckpt")


class LoadedRun(NamedTuple):
    """A trained model with everything that describes it.

    Attributes:
        model: the model, in eval mode, on ``map_location``.
        config: the resolved run config it was trained with.
        checkpoint_path: the ``.ckpt`` file that was read.
        run_dir: the run folder (``RUN``) when the checkpoint lies in ``RUN/checkpoints/``,
            else None.
        attr_means: (40,) float mean of the training attributes in {0, 1} (CVAE runs on data
            with attributes), else None; a neutral base for attribute-controlled sampling.
        global_step: optimiser steps taken when the checkpoint was written.
    """

    model: GenerativeModel
    config: RunConfig
    checkpoint_path: Path
    run_dir: Path | None
    attr_means: torch.Tensor | None = None
    global_step: int = 0


def checkpoint_payload(cfg: RunConfig, attr_means: list[float] | None = None) -> dict[str, Any]:
    """The ``checkpoint["latentcam"]`` entry: plain Python values only (safe to load)."""
    from latentcam import __version__

    return {
        "format": FORMAT_VERSION,
        "version": __version__,
        "config": to_dict(cfg),
        "attr_means": attr_means,
    }


def resolve_checkpoint(path: str | Path) -> Path:
    """The ``.ckpt`` file meant by ``path``: the file itself, or for a run folder
    ``RUN/checkpoints/best.ckpt`` (else ``last.ckpt``).

    Raises:
        CheckpointError: nothing exists at ``path``, or the folder holds no checkpoint.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            for name in RUN_CHECKPOINTS:
                if (folder / name).is_file():
                    return folder / name
        raise CheckpointError(
            f"no checkpoint in {path}: expected {path / 'checkpoints' / 'best.ckpt'} or "
            f"last.ckpt; train a model into this folder first (latentcam train --out {path})"
        )
    reason = broken_link(path)
    if reason is not None:
        raise CheckpointError(f"checkpoint {path} is {reason}; fix or remove the link")
    raise CheckpointError(f"checkpoint not found: {path}; give a .ckpt file or a run folder")


def resolve_resume(resume: str | Path, run_dir: Path) -> Path:
    """The checkpoint to resume from: a ``.ckpt`` file; ``"last"`` (= ``RUN/checkpoints/
    last.ckpt`` of ``run_dir``); or a run folder (its ``checkpoints/last.ckpt``).

    Raises:
        CheckpointError: the file or folder holds no checkpoint.
    """
    path = run_dir if str(resume) == "last" else Path(resume)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(
            f"nothing to resume in {path}: no checkpoints/last.ckpt; start the run without "
            "--resume, or give the .ckpt file to resume from"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint to resume from not found: {path}")
    return path


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a latentcam checkpoint dict safely (``torch.load(weights_only=True)``).

    Raises:
        CheckpointError: missing, truncated/corrupt, or not written by latentcam.
    """
    ckpt_path = resolve_checkpoint(path)
    try:
        # mmap: reading only the config of a large checkpoint stays cheap
        try:
            checkpoint = torch.load(
                ckpt_path, map_location=map_location, weights_only=True, mmap=True
            )
        except RuntimeError as err:  # not a zip file: a cut one, or a plain pickle
            with open(ckpt_path, "rb") as fh:
                is_pickle = fh.read(1) == b"\x80"  # pickle's PROTO opcode; a zip starts "PK"
            if "mmap can only be used" not in str(err) or not is_pickle:
                raise
            raise CheckpointError(
                f"{ckpt_path} is a Python pickle (or an old torch.save format), not a "
                f"latentcam checkpoint: {TENSORS_ONLY}; give a checkpoint written by "
                "`latentcam train`"
            ) from None
    except PermissionError:
        raise CheckpointError(
            f"cannot read checkpoint {ckpt_path}: permission denied; check the file's permissions"
        ) from None
    except (
        RuntimeError,
        pickle.UnpicklingError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,  # a short file: mmap fails with EINVAL
        LookupError,  # damaged pickle bytes: a missing memo key, an empty stack ...
        TypeError,
        AttributeError,
        ArithmeticError,
    ) as err:
        found = pickled_objects(err)
        if found:
            raise CheckpointError(
                f"{ckpt_path} holds {found}, not only tensors: {TENSORS_ONLY}; give a "
                "checkpoint written by `latentcam train`, or import the model's state dict "
                "(torch.save(model.state_dict(), FILE)) with `latentcam import --weights`"
            ) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read checkpoint {ckpt_path}: the file is truncated or corrupt ({first}); "
            "use another checkpoint (e.g. RUN/checkpoints/last.ckpt) or train again"
        ) from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise CheckpointError(
            f"{ckpt_path} is not a latentcam checkpoint (it has no '{CHECKPOINT_KEY}' entry); "
            "give a checkpoint written by `latentcam train`"
        )
    payload = checkpoint[CHECKPOINT_KEY]
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"{ckpt_path} has checkpoint format {found!r}, this latentcam reads format "
            f"{FORMAT_VERSION}; load it with the latentcam version that wrote it"
        )
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{ckpt_path} holds no model weights (no 'state_dict'); train again")
    checkpoint["_path"] = str(ckpt_path)
    return checkpoint


def nonfinite_entries(state_dict: dict[str, Any], show: int = 3) -> list[str]:
    """Names of (up to ``show``) floating tensors in ``state_dict`` holding NaN or Inf."""
    bad: list[str] = []
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                bad.append(name)
                if len(bad) >= show:
                    break
    return bad


def check_finite_weights(checkpoint: dict[str, Any]) -> None:
    """Refuse a checkpoint (from :func:`read_checkpoint`) whose weights hold NaN or Inf: a
    model decoded from them draws nothing but NaN.

    Raises:
        CheckpointError: the names of (up to 3) such tensors and what to do.
    """
    bad = nonfinite_entries(checkpoint["state_dict"])
    if bad:
        raise CheckpointError(
            f"the weights in {checkpoint.get('_path', 'the checkpoint')} hold NaN or Inf "
            f"({', '.join(bad)}): a diverged or damaged run; use another checkpoint (e.g. "
            "RUN/checkpoints/best.ckpt or last.ckpt) or train again"
        )


def config_of(checkpoint: dict[str, Any]) -> RunConfig:
    """The resolved :class:`RunConfig` stored in a checkpoint dict from :func:`read_checkpoint`."""
    try:
        return load_config(base=checkpoint[CHECKPOINT_KEY]["config"])
    except ConfigError as err:
        raise CheckpointError(
            f"checkpoint {checkpoint.get('_path', '')} holds a config this latentcam cannot "
            f"use: {err}"
        ) from None


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The pure model's state dict (the ``model.`` entries, prefix removed)."""
    state = checkpoint["state_dict"]
    return {k[len(MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}


def _run_dir_of(ckpt_path: Path) -> Path | None:
    if ckpt_path.parent.name == "checkpoints":
        return ckpt_path.parent.parent
    return None


#: What :func:`load_run` can require of a model (``needs=``): the question it asks the
#: model, and how the message names the capability.
NEEDS = {
    "image": (has_image_output, "an image output"),
    "segmentation": (has_seg_output, "a segmentation output"),
    "condition": (is_conditional, "a condition (a conditional model)"),
}


def _check_needs(model: LatentModel, needs: str | None, where: Path) -> None:
    if needs is None:
        return
    if needs not in NEEDS:
        raise InputError(f"needs must be one of {', '.join(NEEDS)} or None, got {needs!r}")
    has, what = NEEDS[needs]
    if not has(model):
        outputs = ", ".join(sorted(model.outputs))
        raise CheckpointError(
            f"{where} holds a model without {what} (it outputs: {outputs}; condition features: "
            f"{model.cond_dim}), but one with {what} is needed here; give another run"
        )


def load_run(path: str | Path, map_location: Any = "cpu", needs: str | None = None) -> LoadedRun:
    """Rebuild a trained model from a checkpoint file or a run folder, with nothing else.

    Args:
        path: a ``.ckpt`` file, or a run folder (uses ``checkpoints/best.ckpt``, else
            ``last.ckpt``), or the folder of an adapted model (``adapter.json`` and
            ``weights.safetensors``, :mod:`latentcam.models.saved`).
        map_location: where the weights go (``"cpu"``, ``"cuda"``, a ``torch.device``).
        needs: if given, a capability the model must have (a key of :data:`NEEDS`:
            ``"image"``, ``"segmentation"`` or ``"condition"``).

    Raises:
        CheckpointError: missing, corrupt or foreign file; a model without the capability
            ``needs`` names; weights that do
            not fit the model the config describes, or that hold NaN or Inf.
    """
    if is_adapter_run(path):
        return _load_adapter_run(Path(path), map_location, needs)
    checkpoint = read_checkpoint(path, map_location=map_location)
    check_finite_weights(checkpoint)
    ckpt_path = Path(checkpoint["_path"])
    cfg = config_of(checkpoint)
    model = build_model(cfg.model)
    _check_needs(model, needs, ckpt_path)
    state = model_state(checkpoint)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise CheckpointError(
            f"the weights in {ckpt_path} do not fit the {cfg.model.kind} model its config "
            f"describes ({state_diff(model.state_dict(), state)}); the file was edited or "
            "written by an incompatible version: train again or use another checkpoint"
        ) from None
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    payload = checkpoint[CHECKPOINT_KEY]
    means = payload.get("attr_means")
    attr_means = torch.tensor(means, dtype=torch.float32) if means is not None else None
    return LoadedRun(
        model=model,
        config=cfg,
        checkpoint_path=ckpt_path,
        run_dir=_run_dir_of(ckpt_path) if Path(path).is_file() else Path(path),
        attr_means=attr_means,
        global_step=int(checkpoint.get("global_step", 0)),
    )


def _stand_in_config(model: LatentModel) -> ModelConfig:
    """The model config of ours whose capabilities match an adapted model's (outputs,
    condition, image size, latent width), for the code that holds only a config."""
    shared: dict[str, Any] = {"image_size": model.image_size, "latent_dim": model.latent_dim}
    if has_seg_output(model):
        return SegVAEConfig(
            seg_classes=seg_class_count(model), seg_recon_image=has_image_output(model), **shared
        )
    if is_conditional(model):
        return CVAEConfig(cond_dim=model.cond_dim, **shared)
    return VAEConfig(**shared)


def _load_adapter_run(path: Path, map_location: Any, needs: str | None) -> LoadedRun:
    """:func:`load_run` for an adapted model's folder. Its config is a default RunConfig
    with a stand-in model config (:func:`_stand_in_config`) and the data it expects."""

    model = load_adapted(path, map_location=map_location)
    _check_needs(model, needs, path)
    data = read_spec(path).get("data")
    cfg = RunConfig(
        model=_stand_in_config(model),
        data=DataConfig(path=data) if data else DataConfig(),
    )
    return LoadedRun(
        model=model, config=cfg, checkpoint_path=path / "weights.safetensors", run_dir=path
    )


def load_model(
    path: str | Path, map_location: Any = "cpu", needs: str | None = None
) -> GenerativeModel:
    """The trained model (eval mode) from a ``.ckpt`` or a run folder; see :func:`load_run`."""
    return load_run(path, map_location=map_location, needs=needs).model


def check_image_size(model_cfg: ModelConfig, data_size: int | tuple[int, int]) -> None:
    """Raise :class:`InputError` unless images of ``data_size`` fit the model.

    Args:
        model_cfg: the model's config (``LoadedRun.config.model``).
        data_size: the side of square images, or ``(H, W)``.
    """
    height, width = (data_size, data_size) if isinstance(data_size, int) else data_size
    size = model_cfg.image_size
    if (height, width) != (size, size):
        raise InputError(
            f"the model was built for {size}x{size} images, but the data is "
            f"{height}x{width}: load the data at --size {size}, or train a model at "
            f"{height}x{width}"
        )
