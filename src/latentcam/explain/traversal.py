"""Latent traversals and effect maps: what a latent unit does to the decoded image.

The paper (Sec. 4.2, Fig. 10) adds 0.1 ... 0.9 to one latent unit ("adds 0.1 and 0.5 to
node 3"), decodes each, and shows a Grad-CAM heatmap "for each iteration": the map of that
unit on the decoded image, re-encoded. :func:`traverse` does exactly that for many images
and units at once, and also *measures* the change: the effect map
|decode(z + step e_k) - decode(z)|, which says where the unit acts on the output and can be
compared with where the encoder looked (:mod:`latentcam.explain.metrics`).

- :func:`traverse`: decoded images, heatmaps and effect maps (B, K', S, ...).
- :func:`effect_maps`: |decode(mu + d e_k) - decode(mu - d e_k)| for every unit, batched.
- :func:`attribute_traversal`: a CVAE's condition attributes instead of latent units.
- :func:`save_traversal`: strip PNGs, animated GIFs and traversal.npz.

Decoded outputs are the image (``recon``) when the model has one; for a segmentation
model without an image head they are the class probabilities (sigmoid for the binary
mask, softmax for parsing), drawn with a class palette.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn

from latentcam.checkpoint import LoadedRun, load_run
from latentcam.data.classes import ATTRIBUTE_IDS, ATTRIBUTE_NAMES
from latentcam.errors import InputError
from latentcam.explain.cam import compute_cams, latent_cams, normalise, upsample
from latentcam.explain.hooks import eval_mode
from latentcam.explain.targets import Target, direction_targets, latent_targets
from latentcam.figures import colorize, make_grid, overlay, save_png, to_uint8_hwc
from latentcam.io import atomic_path, ensure_dir
from latentcam.models.base import Decoded, GenerativeModel, kl_per_unit
from latentcam.models.protocol import is_conditional
from latentcam.runs import check_run_output, open_run_data

log = logging.getLogger(__name__)

Tensor = torch.Tensor

#: The paper's traversal (Sec. 4.2): add 0.1 ... 0.9 to one unit.
PAPER_STEPS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: The paper's Keras code: add 0.05 * j, j = 0 ... 19.
PAPER_CODE_STEPS: tuple[float, ...] = tuple(round(0.05 * j, 2) for j in range(20))
#: Default steps of ``mode="sigma"``, in prior standard deviations.
SIGMA_STEPS: tuple[float, ...] = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
#: Default values of a condition attribute in :func:`attribute_traversal`.
ATTRIBUTE_STEPS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

MODES = ("additive", "sigma", "attribute", "direction")
OUTPUTS = ("auto", "image", "seg")


class Traversal(NamedTuple):
    """A latent (or attribute) traversal of B images, K' units, S steps.

    Attributes:
        units: long (K',) latent unit indices (attribute indices for mode "attribute").
        steps: float (S,) the step values.
        mode: "additive" (the paper: z_k + step), "sigma" (z_k + step * 1, the step in prior
            standard deviations), "attribute" (condition attribute set to step) or
            "direction" (z + step * scale_j * w_j, the step in data standard deviations).
        images: float (B, K', S, 3, H, W) in [0, 1], the decoded images.
        heatmaps: float (B, K', S, h, w) >= 0, unnormalised Grad-CAM maps of unit k on the
            decoded image, re-encoded (the paper's "heatmap for each iteration"); for mode
            "attribute" the mean over all units (the paper's averaged map). For a model with
            no image output, the maps of the input image (the same for every step).
        effects: float (B, K', S, H, W) >= 0, |decoded(step) - decoded(unchanged)| averaged
            over channels (0 at step 0).
        layer: the explained layer's name.
        method: the CAM method.
        names: for mode "direction", the T direction names (``units`` is then 0..T-1).
    """

    units: Tensor
    steps: Tensor
    mode: str
    images: Tensor
    heatmaps: Tensor
    effects: Tensor
    layer: str = ""
    method: str = ""
    names: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- helpers


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def decoded_output(decoded: Decoded, output: str) -> Tensor:
    """The decoded output compared by effect maps: (N, C, H, W).

    "image": recon in [0, 1]; "seg": class probabilities; "auto": the image when there
    is one, else the probabilities.
    """
    if output not in OUTPUTS:
        raise InputError(f"unknown output '{output}'; choose one of {', '.join(OUTPUTS)}")
    if output == "image" or (output == "auto" and decoded.recon is not None):
        if decoded.recon is None:
            raise InputError("this model decodes no image (recon is None); use output='seg'")
        return decoded.recon
    if decoded.seg_logits is None:
        raise InputError("this model decodes no segmentation; use output='image'")
    logits = decoded.seg_logits
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def _as_picture(outputs: Tensor) -> Tensor:
    """Outputs (N, C, H, W) -> RGB (N, 3, H, W) in [0, 1] (class probabilities get a palette)."""
    C = outputs.shape[1]
    if C == 3:
        return outputs
    if C == 1:
        return outputs.expand(-1, 3, -1, -1)
    import matplotlib

    palette = matplotlib.colormaps["tab20"](np.arange(C) % 20)[:, :3]  # (C, 3)
    colours = torch.as_tensor(palette, dtype=outputs.dtype, device=outputs.device)
    return torch.einsum("nchw,cd->ndhw", outputs, colours).clamp(0.0, 1.0)


def _unit_index(units: Sequence[int] | Tensor | None, K: int, what: str = "unit") -> Tensor:
    if units is None:
        return torch.arange(K)
    index = torch.as_tensor(units, dtype=torch.long).flatten().cpu()
    if index.numel() == 0:
        raise InputError(f"no {what}s given")
    bad = [int(u) for u in index if not 0 <= int(u) < K]
    if bad:
        raise InputError(
            f"{what} index {bad[0]} out of range: the model has {K} {what}s (0..{K - 1})"
        )
    return index


def _direction_rows(directions: Tensor, K: int) -> Tensor:
    """Directions (T, K) (or one (K,)) as finite float32 rows for a model with K units."""
    rows = torch.as_tensor(directions).detach().float().cpu()
    if rows.dim() == 1:
        rows = rows.unsqueeze(0)
    if rows.dim() != 2 or rows.shape[0] == 0 or rows.shape[1] != K:
        raise InputError(
            f"directions must be (T, {K}) for this model (K={K} latent units); got "
            f"{tuple(rows.shape)}"
        )
    if not bool(torch.isfinite(rows).all()):
        raise InputError("directions hold NaN or Inf values")
    return rows


def _steps(steps: Sequence[float] | Tensor | None, default: Sequence[float]) -> Tensor:
    values = torch.as_tensor(default if steps is None else steps, dtype=torch.float32).flatten()
    if values.numel() == 0:
        raise InputError("no traversal steps given")
    return values


def _decode_chunks(
    model: GenerativeModel,
    z: Tensor,
    cond: Tensor | None,
    output: str,
    batch_size: int,
    progress: str | None = None,
) -> Tensor:
    """decode(z) for N latents in chunks of ``batch_size`` -> outputs (N, C, H, W); with
    ``progress`` a bar of that name over the chunks."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    parts = []
    starts = range(0, z.shape[0], batch_size)
    for start in tqdm(starts, desc=progress, disable=progress is None, leave=False):
        stop = start + batch_size
        decoded = model.decode(z[start:stop], None if cond is None else cond[start:stop])
        parts.append(decoded_output(decoded, output))
    return torch.cat(parts)


def _repeat(t: Tensor | None, times: int) -> Tensor | None:
    """Rows (B, ...) -> (B * times, ...), each row repeated ``times`` times in place."""
    return None if t is None else t.repeat_interleave(times, dim=0)


# ----------------------------------------------------------------------------- effect maps


@torch.no_grad()
def effect_maps(
    model: GenerativeModel,
    mu: Tensor,
    units: Sequence[int] | Tensor | None = None,
    delta: float = 3.0,
    cond: Tensor | None = None,
    symmetric: bool = True,
    output: str = "auto",
    chunk_size: int = 256,
    directions: Tensor | None = None,
    progress: bool = False,
) -> Tensor:
    """Where each latent unit (or direction) acts on the decoded output.

    symmetric: |decode(mu + delta e_k) - decode(mu - delta e_k)|; else
    |decode(mu + delta e_k) - decode(mu)|; averaged over colour (or class) channels. The
    finite-difference counterpart of a unit's Grad-CAM map (the paper's traversal,
    measured): a unit that moves the mouth has its effect on the mouth. With
    ``directions`` (T, K), row d_j replaces e_k: |decode(mu + delta d_j) - decode(mu -
    delta d_j)|. All B*K' latents are decoded in chunks of ``chunk_size`` (no loop over
    images).

    Args:
        model: a latentcam model (``decode``), put in eval mode for the call.
        mu: (B, K) posterior means (``model.encode(x)[0]``).
        units: the K' units (default all K); not with ``directions``.
        delta: the step in latent units (3 = three prior standard deviations), or in units
            of each direction's row (e.g. rows scaled to one data standard deviation).
        cond: (B, A) condition of a CVAE, else None.
        symmetric: central (True) or one-sided difference.
        output: "auto" | "image" | "seg" (see module docstring).
        chunk_size: latents decoded per call.
        directions: (T, K) displacement per unit of ``delta``, one row per map, or None.
        progress: show a progress bar over the decoded chunks.

    Returns:
        float (B, K', H, W) (or (B, T, H, W)) >= 0 on the model's device; in output units
        ([0, 1] for images).
    """
    device = _device(model)
    mu = torch.as_tensor(mu, device=device).float()
    if mu.dim() != 2:
        raise InputError(f"mu must be (B, K); got {tuple(mu.shape)}")
    B, K = mu.shape
    cond = None if cond is None else torch.as_tensor(cond, device=device).float()
    if directions is not None:
        if units is not None:
            raise InputError("effect_maps takes units or directions, not both")
        step = _direction_rows(directions, K).to(device) * delta  # (T, K)
    else:
        index = _unit_index(units, K).to(device)
        step = torch.zeros(index.numel(), K, device=device)
        step[torch.arange(index.numel(), device=device), index] = delta  # row j = delta e_k
    Kp = step.shape[0]
    with eval_mode(model):
        plus = (mu.unsqueeze(1) + step.unsqueeze(0)).reshape(B * Kp, K)  # (B*K', K)
        cond_rep = _repeat(cond, Kp)
        bar = "effect maps" if progress else None
        out_plus = _decode_chunks(model, plus, cond_rep, output, chunk_size, bar)
        if symmetric:
            minus = (mu.unsqueeze(1) - step.unsqueeze(0)).reshape(B * Kp, K)
            out_ref = _decode_chunks(model, minus, cond_rep, output, chunk_size, bar)
        else:
            out_ref = _decode_chunks(model, mu, cond, output, chunk_size).repeat_interleave(Kp, 0)
    effects = (out_plus - out_ref).abs().mean(dim=1)  # (B*K', H, W)
    return effects.reshape(B, Kp, *effects.shape[-2:])


# ----------------------------------------------------------------------------- traversals


def _heatmaps_of(
    model: nn.Module,
    images: Tensor,
    cond: Tensor | None,
    targets: Sequence[Target] | None,
    layer: str | None,
    method: str,
    batch_size: int,
) -> tuple[Tensor, str]:
    """CAM maps of ``targets`` (None = the mean over all units) on N images -> (N, T, h, w)."""

    chunks, layer_name = [], ""
    for start in range(0, images.shape[0], batch_size):
        stop = start + batch_size
        c = None if cond is None else cond[start:stop]
        if targets is None:
            result = latent_cams(model, images[start:stop], cond=c, layer=layer, method=method)
        else:
            result = compute_cams(
                model, images[start:stop], targets, cond=c, layer=layer, method=method
            )
        maps = result.maps.detach()
        chunks.append(maps.mean(dim=1, keepdim=True) if targets is None else maps)
        layer_name = result.layer
    return torch.cat(chunks), layer_name


def _traverse_rows(
    model: GenerativeModel,
    x: Tensor,
    rows: Tensor,
    targets: Sequence[Target],
    step_values: Tensor,
    cond: Tensor | None,
    layer: str | None,
    method: str,
    batch_size: int,
    output: str,
) -> tuple[Tensor, Tensor, Tensor, str]:
    """The traversal z = mu + s * rows[j] for every image, row j and step s.

    Returns images (B, T, S, 3, H, W), heatmaps (B, T, S, h, w) of target j on the decoded
    image re-encoded (of the input images when the model decodes no image), effects
    (B, T, S, H, W), and the explained layer's name.
    """
    device = step_values.device
    with eval_mode(model), torch.no_grad():
        mu, _ = model.encode(x, cond)
        B, K = mu.shape
        T, S = rows.shape[0], step_values.numel()
        base = decoded_output(model.decode(mu, cond), output)  # (B, C, H, W)
        shift = step_values[None, :, None] * rows.to(device)[:, None, :]  # (T, S, K)
        z = (mu[:, None, None, :] + shift.unsqueeze(0)).reshape(B * T * S, K)
        cond_rep = _repeat(cond, T * S)
        outputs = _decode_chunks(model, z, cond_rep, output, batch_size)  # (B*T*S, C, H, W)
        C, H, W = outputs.shape[1:]
        outputs = outputs.reshape(B, T, S, C, H, W)
        effects = (outputs - base[:, None, None]).abs().mean(dim=3)  # (B, T, S, H, W)
        images = _as_picture(outputs.reshape(-1, C, H, W)).reshape(B, T, S, 3, H, W)
    if C == 3 and output != "seg":
        per_row = []
        for j, target in enumerate(targets):  # one engine call per row, all images and steps
            maps, layer_name = _heatmaps_of(
                model,
                images[:, j].reshape(B * S, 3, H, W),
                _repeat(cond, S),
                [target],
                layer,
                method,
                batch_size,
            )
            per_row.append(maps[:, 0].reshape(B, S, *maps.shape[-2:]))
        heatmaps = torch.stack(per_row, dim=1)  # (B, T, S, h, w)
    else:
        log.info("model has no image output: heatmaps are those of the input images")
        maps, layer_name = _heatmaps_of(model, x, cond, list(targets), layer, method, batch_size)
        heatmaps = maps.unsqueeze(2).expand(-1, -1, S, -1, -1).contiguous()
    return images, heatmaps, effects, layer_name


def _check_inputs(
    model: GenerativeModel, x: Tensor, cond: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    device = _device(model)
    x = torch.as_tensor(x, device=device).float()
    if x.dim() != 4:
        raise InputError(f"x must be images (B, 3, H, W); got {tuple(x.shape)}")
    cond = None if cond is None else torch.as_tensor(cond, device=device).float()
    return x, cond


def traverse(
    model: GenerativeModel,
    x: Tensor,
    units: Sequence[int] | Tensor,
    steps: Sequence[float] | Tensor | None = None,
    mode: str = "additive",
    cond: Tensor | None = None,
    layer: str | None = None,
    method: str = "gradcam",
    batch_size: int = 64,
    output: str = "auto",
) -> Traversal:
    """Traverse latent units of encoded images: the paper's Sec. 4.2 / Fig. 10, measured.

    For each image b, unit k and step s: z = mu_b + s * e_k (``mode="additive"``, the
    paper, steps default 0.1 ... 0.9; ``mode="sigma"``, steps in prior standard deviations,
    default -3 ... 3; the prior is N(0, I), so one SD is 1 latent unit). Each z is decoded;
    the decoded image is re-encoded and the Grad-CAM map of unit k computed on it; and the
    effect map |decoded(z) - decoded(mu_b)| is taken.

    Args:
        model: a latentcam model; put in eval mode for the call (z = mu).
        x: images (B, 3, H, W) in [0, 1].
        units: the K' units to traverse.
        steps: the S step values (default by mode).
        mode: "additive" or "sigma".
        cond: (B, A) condition of a CVAE, else None.
        layer: the explanation layer (default ``model.explain_layer``).
        method: CAM method (see :func:`latentcam.explain.cam.latent_cams`).
        batch_size: images decoded or explained per call.
        output: "auto" | "image" | "seg" (see module docstring).

    Returns:
        :class:`Traversal`; tensors on the model's device.
    """
    if mode not in ("additive", "sigma"):
        raise InputError(f"unknown traversal mode '{mode}'; choose additive or sigma")
    x, cond = _check_inputs(model, x, cond)
    step_values = _steps(steps, PAPER_STEPS if mode == "additive" else SIGMA_STEPS).to(x.device)
    K = model.latent_dim or int(model.encode(x[:1], None if cond is None else cond[:1])[0].shape[1])
    index = _unit_index(units, K)
    rows = torch.zeros(index.numel(), K)
    rows[torch.arange(index.numel()), index] = 1.0  # unit k is the direction e_k
    targets = latent_targets(index.tolist())
    images, heatmaps, effects, layer_name = _traverse_rows(
        model, x, rows, targets, step_values, cond, layer, method, batch_size, output
    )
    return Traversal(
        units=index.to(x.device),
        steps=step_values,
        mode=mode,
        images=images,
        heatmaps=heatmaps,
        effects=effects,
        layer=layer_name,
        method=method,
    )


def traverse_directions(
    model: GenerativeModel,
    x: Tensor,
    directions: Tensor,
    names: Sequence[str],
    scales: Sequence[float] | Tensor | None = None,
    steps: Sequence[float] | Tensor | None = None,
    cond: Tensor | None = None,
    layer: str | None = None,
    method: str = "gradcam",
    batch_size: int = 64,
    output: str = "auto",
    moves: Tensor | None = None,
) -> Traversal:
    """Traverse directions in latent space: z = mu_b + s * m_j, m_j = scale_j * w_j or given.

    With ``moves`` = :attr:`latentcam.explain.directions.DirectionSet.displacements` the step
    s is in the data's standard deviations of the concept's score mu . w_j, along its
    activation pattern (:class:`latentcam.explain.directions.Direction`), so that s = +-2
    moves a face about as far as the data's faces spread. At every step the decoded image is
    re-encoded and the CAM map of the score mu . w_j computed on it, and the effect map
    |decoded(z) - decoded(mu_b)| is taken (as :func:`traverse` does for units).

    Args:
        model: a latentcam model.
        x: images (B, 3, H, W) in [0, 1].
        directions: (T, K) vectors w_j in mu space (the explained scores mu . w_j).
        names: T names (figure titles and file names).
        scales: (T,) step units along w_j when ``moves`` is not given; default 1.
        steps: the S step values (default -3 ... 3).
        moves: (T, K) the move m_j of one step unit, or None for scale_j * w_j.
        cond, layer, method, batch_size, output: as :func:`traverse`.

    Returns:
        :class:`Traversal` with mode "direction", ``units`` = 0..T-1 and ``names``.
    """
    x, cond = _check_inputs(model, x, cond)
    step_values = _steps(steps, SIGMA_STEPS).to(x.device)
    K = model.latent_dim or int(model.encode(x[:1], None if cond is None else cond[:1])[0].shape[1])
    vectors = _direction_rows(directions, K)
    if len(names) != vectors.shape[0]:
        raise InputError(f"{vectors.shape[0]} directions need {vectors.shape[0]} names")
    scale = torch.ones(vectors.shape[0]) if scales is None else torch.as_tensor(scales).float()
    if scale.shape != (vectors.shape[0],) or not bool((torch.isfinite(scale) & (scale > 0)).all()):
        raise InputError("direction scales must be one finite positive number per direction")
    targets = direction_targets(vectors, names)
    rows = vectors * scale[:, None] if moves is None else _direction_rows(moves, K)
    if rows.shape != vectors.shape:
        raise InputError(f"moves must be one (K,) row per direction, got {tuple(rows.shape)}")
    images, heatmaps, effects, layer_name = _traverse_rows(
        model,
        x,
        rows,
        targets,
        step_values,
        cond,
        layer,
        method,
        batch_size,
        output,
    )
    return Traversal(
        units=torch.arange(vectors.shape[0], device=x.device),
        steps=step_values,
        mode="direction",
        images=images,
        heatmaps=heatmaps,
        effects=effects,
        layer=layer_name,
        method=method,
        names=tuple(str(n) for n in names),
    )


def attribute_traversal(
    model: GenerativeModel,
    x: Tensor,
    cond: Tensor,
    attrs: Sequence[int] | Tensor,
    steps: Sequence[float] | Tensor | None = None,
    layer: str | None = None,
    method: str = "gradcam",
    batch_size: int = 64,
    output: str = "auto",
) -> Traversal:
    """Traverse a CVAE's condition attributes (the paper's CVAE, Sec. 5.2).

    Each image is encoded with its own condition; then attribute a is set to each value
    in ``steps`` (default 0, 0.25, ..., 1) and mu decoded with the changed condition. Heatmaps
    are the mean over all units of the Grad-CAM maps (the paper's averaged map) of the
    decoded image, re-encoded with the changed condition; effects are
    |decoded(changed) - decoded(own condition)|.

    Args:
        model: a conditional model (``cond_dim`` > 0).
        x: images (B, 3, H, W). cond: (B, A) the images' own attributes in {0, 1}.
        attrs: the A' attribute indices (columns of cond).
        steps: the S values the attribute takes.

    Returns:
        :class:`Traversal` with mode "attribute" and ``units`` = the attribute indices.
    """
    device = _device(model)
    x = torch.as_tensor(x, device=device).float()
    cond = torch.as_tensor(cond, device=device).float()
    if cond.dim() != 2 or cond.shape[0] != x.shape[0]:
        raise InputError(f"cond must be (B, A) with B = {x.shape[0]}; got {tuple(cond.shape)}")
    B, A = cond.shape
    index = _unit_index(attrs, A, what="attribute")
    step_values = _steps(steps, ATTRIBUTE_STEPS).to(device)
    Ap, S = index.numel(), step_values.numel()
    with eval_mode(model), torch.no_grad():
        mu, _ = model.encode(x, cond)
        base = decoded_output(model.decode(mu, cond), output)
        changed = cond[:, None, None, :].expand(B, Ap, S, A).clone()  # (B, A', S, A)
        changed[:, torch.arange(Ap, device=device), :, index.to(device)] = step_values
        changed = changed.reshape(B * Ap * S, A)
        z = mu.repeat_interleave(Ap * S, dim=0)  # (B*A'*S, K)
        outputs = _decode_chunks(model, z, changed, output, batch_size)
        C, H, W = outputs.shape[1:]
        outputs = outputs.reshape(B, Ap, S, C, H, W)
        effects = (outputs - base[:, None, None]).abs().mean(dim=3)
        images = _as_picture(outputs.reshape(-1, C, H, W)).reshape(B, Ap, S, 3, H, W)
    if C == 3 and output != "seg":
        maps, layer_name = _heatmaps_of(
            model, images.reshape(-1, 3, H, W), changed, None, layer, method, batch_size
        )
        heatmaps = maps[:, 0].reshape(B, Ap, S, *maps.shape[-2:])
    else:
        maps, layer_name = _heatmaps_of(model, x, cond, None, layer, method, batch_size)
        heatmaps = maps[:, 0][:, None, None].expand(-1, Ap, S, -1, -1).contiguous()
    return Traversal(
        units=index.to(device),
        steps=step_values,
        mode="attribute",
        images=images,
        heatmaps=heatmaps,
        effects=effects,
        layer=layer_name,
        method=method,
    )


# ----------------------------------------------------------------------------- output files


class SavedTraversal(NamedTuple):
    """Files written by :func:`save_traversal`.

    Attributes:
        strips: one PNG per unit (rows: decoded image, heatmap overlay, effect map;
            columns: steps).
        gifs: one animated GIF per unit (frames: steps).
        arrays: traversal.npz.
    """

    strips: list[Path]
    gifs: list[Path]
    arrays: Path


def _step_label(mode: str, value: float) -> str:
    if mode == "attribute":
        return f"={value:g}"
    unit = "sd" if mode in ("sigma", "direction") else ""
    return f"0{unit}" if value == 0 else f"{value:+g}{unit}"


def file_stem(name: str) -> str:
    """A direction or attribute name as a file name: letters, digits, '-', '_' and '.'."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return stem or "direction"


def _unit_label(trav: Traversal, j: int) -> tuple[str, str]:
    """(title, file stem) of the j-th traversed unit, attribute or direction."""
    index = int(trav.units[j])
    if trav.mode == "direction":
        name = trav.names[j] if j < len(trav.names) else f"direction {index}"
        return f"direction {name}", f"direction_{file_stem(name)}"
    if trav.mode == "attribute":
        name = ATTRIBUTE_NAMES[index] if index < len(ATTRIBUTE_NAMES) else f"attribute {index}"
        return name, f"attr_{file_stem(name)}"
    return f"unit {index}", f"unit_{index:03d}"


#: Pixel size of the strips' and GIFs' labels (DejaVu Sans, matplotlib's own font).
LABEL_PX = 13


def _font(size: int = LABEL_PX) -> Any:
    """DejaVu Sans at ``size`` px (shipped with matplotlib), so that labels are legible."""
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(
        str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size
    )


def _with_labels(
    image: np.ndarray,
    title: str,
    columns: Sequence[str],
    col_width: int,
    pad: int,
    rows: Sequence[str] = (),
    row_height: int = 0,
    scale_row: int | None = None,
) -> np.ndarray:
    """Add a title band, one label per column above and one per row left of a uint8
    (H, W, 3) grid; row ``scale_row`` also gets a magma colour bar (its 0 ... max scale)."""
    from PIL import Image, ImageDraw

    font = _font()
    band = 2 * LABEL_PX + 12 if columns else LABEL_PX + 8
    gutter = 0
    if rows:
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        gutter = 8 + max(
            int(measure.textlength(line, font=font)) for r in rows for line in r.split("\n")
        )
    canvas = Image.new("RGB", (image.shape[1] + gutter, image.shape[0] + band), (255, 255, 255))
    canvas.paste(Image.fromarray(image), (gutter, band))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 2), title, fill=(0, 0, 0), font=font)
    for i, label in enumerate(columns):
        x = gutter + pad + i * (col_width + pad) + 2
        draw.text((x, LABEL_PX + 7), label, fill=(0, 0, 0), font=font)
    for r, label in enumerate(rows):
        top = band + pad + r * (row_height + pad)
        draw.multiline_text((4, top + 4), label, fill=(0, 0, 0), font=font, spacing=3)
        if r == scale_row:
            lines = label.count("\n") + 1
            y0 = top + 8 + lines * (LABEL_PX + 3)
            height = max(8, row_height - (y0 - top) - 6)
            bar = colorize(np.linspace(1.0, 0.0, height)[:, None].repeat(12, 1), cmap="magma")
            canvas.paste(Image.fromarray(bar), (6, y0))
    return np.asarray(canvas)


def save_traversal(
    trav: Traversal,
    out_dir: str | Path,
    image_index: int = 0,
    frame_ms: int = 400,
) -> SavedTraversal:
    """Write a traversal: a strip PNG and an animated GIF per unit, and traversal.npz.

    Heatmaps are upsampled to the image size and, like the effect maps, scaled by their
    maximum over the unit's steps (so that growth across steps stays visible).

    Files (``out_dir``):
      - ``unit_{k:03d}.png`` (``attr_{a:02d}.png`` for attributes, ``direction_NAME.png``
        for directions): rows = decoded image,
        Grad-CAM overlay, effect map; columns = steps; titled.
      - ``unit_{k:03d}.gif``: one frame per step (image | overlay | effect), looping.
      - ``traversal.npz``: ``units`` (K',), ``steps`` (S,), ``mode`` (str), ``layer``,
        ``method``, ``images`` (B, K', S, 3, H, W) uint8 0..255, ``heatmaps``
        (B, K', S, h, w) float32 unnormalised, ``effects`` (B, K', S, H, W) float32.

    Args:
        trav: from :func:`traverse` or :func:`attribute_traversal`.
        out_dir: output folder (created).
        image_index: which image b the figures show (the npz holds all).
        frame_ms: GIF frame duration in milliseconds.
    """
    from PIL import Image

    out = ensure_dir(out_dir)
    B, Kp, S, _, H, W = trav.images.shape
    if not 0 <= image_index < B:
        raise InputError(f"image_index {image_index} out of range: the traversal has {B} images")
    scale = max(1, 128 // max(H, W))  # small images are enlarged (nearest) for legibility
    pad = 2
    labels = [_step_label(trav.mode, float(s)) for s in trav.steps.tolist()]
    images = trav.images[image_index].detach().float().cpu()  # (K', S, 3, H, W)
    heat = upsample(trav.heatmaps[image_index].detach().float().cpu(), (H, W))  # (K', S, H, W)
    heat = normalise(heat.transpose(0, 1), per="unit").transpose(0, 1)  # max over steps per unit
    effects = trav.effects[image_index].detach().float().cpu()
    peaks = effects.flatten(1).max(1).values.tolist()  # (K',) largest change, image units
    effects = normalise(effects.transpose(0, 1), per="unit").transpose(0, 1)
    strips, gifs = [], []
    for j in range(Kp):
        rows = np.concatenate(
            [
                to_uint8_hwc(images[j]),  # (S, H, W, 3)
                overlay(images[j], heat[j]),
                colorize(effects[j], cmap="magma"),
            ]
        )
        if scale > 1:
            rows = rows.repeat(scale, axis=1).repeat(scale, axis=2)
        title, stem = _unit_label(trav, j)
        method = f"{trav.method} " if trav.method else ""
        strip = _with_labels(
            make_grid(rows, nrow=S, pad=pad),
            f"{title} ({trav.mode}): decoded, {method}map, |effect| per step",
            labels,
            W * scale,
            pad,
            rows=["decoded", f"{method}map".strip(), f"|effect|\n0 to {peaks[j]:.2g}"],
            row_height=H * scale,
            scale_row=2,
        )
        strips.append(save_png(out / f"{stem}.png", strip))
        frames = []
        for s in range(S):
            frame = make_grid(rows[[s, S + s, 2 * S + s]], nrow=3, pad=pad)
            frames.append(
                Image.fromarray(
                    _with_labels(frame, f"{title} {labels[s]}: image | map | effect", [], 0, pad)
                )
            )
        gif = out / f"{stem}.gif"
        with atomic_path(gif) as tmp:
            frames[0].save(
                tmp,
                format="GIF",
                save_all=True,
                append_images=frames[1:],
                duration=frame_ms,
                loop=0,
            )
        gifs.append(gif)
    arrays = out / "traversal.npz"
    with atomic_path(arrays) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            units=trav.units.cpu().numpy(),
            steps=trav.steps.cpu().numpy(),
            mode=np.array(trav.mode),
            layer=np.array(trav.layer),
            method=np.array(trav.method),
            names=np.asarray(trav.names, dtype=str),
            images=(trav.images.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(
                np.uint8
            ),
            heatmaps=trav.heatmaps.detach().float().cpu().numpy(),
            effects=trav.effects.detach().float().cpu().numpy(),
        )
    log.info("wrote %d strips, %d GIFs and %s", len(strips), len(gifs), arrays)
    return SavedTraversal(strips=strips, gifs=gifs, arrays=arrays)


if TYPE_CHECKING:
    from latentcam.explain.directions import DirectionSet


class TraverseRunResult(NamedTuple):
    """What :func:`traverse_run` wrote: one saved traversal per mode (and CVAE attributes)."""

    out: Path
    saved: dict[str, SavedTraversal]


def traverse_run(
    run: str | Path | LoadedRun,
    out: str | Path,
    data: str | Path | None = None,
    units: Sequence[int] | None = None,
    deltas: Sequence[float] | None = None,
    sigmas: Sequence[float] | None = None,
    n: int = 4,
    attributes: Sequence[str] | None = None,
    layer: str | None = None,
    method: str = "gradcam",
    progress: bool = True,
    directions: DirectionSet | None = None,
) -> TraverseRunResult:
    """``latentcam traverse``: traversals of a trained run on ``n`` validation images.

    Writes ``out/additive/`` (the paper's steps, default 0.1 ... 0.9) and ``out/sigma/``
    (prior standard deviations, default -3 ... 3), each with a strip PNG and a GIF per unit
    and ``traversal.npz``; for a CVAE also ``out/attributes/`` (condition attributes
    traversed from 0 to 1). Default units: the 5 with the highest KL on these images.

    With ``directions``, ``out/directions/`` holds one strip and GIF per direction
    (``direction_NAME.png``), stepped by ``sigmas`` (default -3 ... 3) in units of the data's
    standard deviation along it (:func:`traverse_directions`); units are then traversed only
    when ``units`` are given, and a CVAE's attribute traversals sit beside.
    """
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    check_run_output(out, loaded, data)
    if attributes:  # checked before anything is written
        if not is_conditional(loaded.model):
            raise InputError(
                f"attributes are traversed for a cvae run; this run is a {loaded.config.model.kind}"
            )
        unknown = [a for a in attributes if a not in ATTRIBUTE_IDS]
        if unknown:
            raise InputError(
                f"unknown attribute '{unknown[0]}'; use CelebA names such as Smiling, Eyeglasses, Wearing_Hat"
            )
    if directions is not None and directions.latent_dim != loaded.model.latent_dim:
        raise InputError(
            f"the directions are for K={directions.latent_dim} latent units; this model has "
            f"K={loaded.model.latent_dim}: find directions on this run"
        )
    batch = open_run_data(loaded, data, n=n, progress=progress)
    out = ensure_dir(out)
    model = batch.run.model
    saved: dict[str, SavedTraversal] = {}
    if directions is not None:
        trav = traverse_directions(
            model,
            batch.images,
            directions.vectors,
            directions.names,
            moves=directions.displacements,
            steps=sigmas,
            cond=batch.cond,
            layer=layer,
            method=method,
        )
        saved["directions"] = save_traversal(trav, out / "directions")
    if directions is None and units is None:
        with torch.no_grad():
            mu, logvar = model.encode(batch.images, batch.cond)
        units = kl_per_unit(mu, logvar).argsort(descending=True)[:5].tolist()
    chosen = list(units) if units is not None else []
    for mode, steps in (("additive", deltas), ("sigma", sigmas)) if chosen else ():
        trav = traverse(
            model,
            batch.images,
            chosen,
            steps=steps,
            mode=mode,
            cond=batch.cond,
            layer=layer,
            method=method,
        )
        saved[mode] = save_traversal(trav, out / mode)
    if batch.cond is not None:
        names = list(attributes or ("Smiling", "Eyeglasses", "Wearing_Hat"))
        trav = attribute_traversal(
            model,
            batch.images,
            batch.cond,
            [ATTRIBUTE_IDS[a] for a in names],
            layer=layer,
            method=method,
        )
        saved["attributes"] = save_traversal(trav, out / "attributes")
    return TraverseRunResult(out, saved)
