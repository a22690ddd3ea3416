"""Decoder-side explanations: where does latent unit k act on the output, exactly?

Grad-CAM (Liu et al. 2020) asks where the *encoder* looked to set mu_k. The reverse
question, "which pixels (and which face parts) does z_k drive", is answered by the
decoder's Jacobian: for unit k, the map

    D_k[p] = mean_c | d decode(z)[c, p] / d z_k |    (mean over the output channels at p)

is, up to the factor 2d, the first-order counterpart of the traversal effect map
mean_c |decode(z + d e_k) - decode(z - d e_k)| (:func:`latentcam.explain.traversal.effect_maps`,
which averages over channels the same way): the two agree where the decoder is close to
linear over the step, and D is exact at z.
It is computed with forward-mode automatic differentiation (one Jacobian-vector product
per unit, vmapped over units: ``torch.func.jvp`` inside ``torch.func.vmap``), so all K
columns cost about K decoder passes with dual numbers, with no backward.

- :func:`decoder_maps`: D (N, T, H, W); :func:`decoder_jacobian` also says whether it was exact.
- :func:`part_matrix`: the unit x part matrix of any maps (share of each unit's mass per
  face region), the same for encoder maps, decoder maps and effect maps.
- :func:`units_for_part`: "which units drive this part": units ranked by their decoder
  mass in the part relative to the part's area (lift).
- :func:`map_agreement` and :func:`matrix_agreement`: Spearman over pixels per unit, and
  Pearson correlation of two unit x part matrices.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from latentcam.data.classes import REGIONS
from latentcam.errors import InputError
from latentcam.explain import metrics as M
from latentcam.explain.hooks import eval_mode
from latentcam.explain.traversal import decoded_output
from latentcam.models.base import GenerativeModel

log = logging.getLogger(__name__)

Tensor = torch.Tensor

#: Units per vmapped jvp call (bounds memory: T*N dual decodes at once).
UNIT_CHUNK = 16
#: Step of the central finite-difference fallback, in latent units.
FD_STEP = 1e-3


class DecoderMaps(NamedTuple):
    """Decoder gradient maps and how they were computed.

    Attributes:
        maps: float (N, T, H, W) >= 0.
        exact: True for forward-mode AD, False when the finite-difference fallback ran.
    """

    maps: Tensor
    exact: bool


def _jacobian_columns(
    model: GenerativeModel, z: Tensor, cond: Tensor | None, units: Tensor, output: str
) -> Tensor:
    """d out / d z_k for the units, by vmapped forward-mode AD: (T, N, C, H, W)."""
    from torch.func import jvp, vmap

    def decode(latent: Tensor) -> Tensor:
        with torch.no_grad():  # forward-mode only: keep no graph for a backward
            return decoded_output(model.decode(latent, cond), output)

    tangents = torch.zeros(units.numel(), *z.shape, dtype=z.dtype, device=z.device)
    tangents[torch.arange(units.numel()), :, units] = 1.0  # (T, N, K): e_k for every image

    def column(t: Tensor) -> Tensor:
        return jvp(decode, (z,), (t,))[1]

    return vmap(column)(tangents)


def _fd_columns(
    model: GenerativeModel, z: Tensor, cond: Tensor | None, units: Tensor, output: str
) -> Tensor:
    """Central finite differences (out(z + h e_k) - out(z - h e_k)) / 2h: (T, N, C, H, W)."""
    cols = []
    with torch.no_grad():
        for k in units.tolist():
            step = torch.zeros_like(z)
            step[:, k] = FD_STEP
            plus = decoded_output(model.decode(z + step, cond), output)
            minus = decoded_output(model.decode(z - step, cond), output)
            cols.append((plus - minus) / (2 * FD_STEP))
    return torch.stack(cols)


def decoder_maps(
    model: GenerativeModel,
    z: Tensor,
    cond: Tensor | None = None,
    units: Sequence[int] | Tensor | None = None,
    output: str = "auto",
) -> Tensor:
    """Per-pixel mean over channels of |d decode(z) / d z_k|: float (N, T, H, W) >= 0.

    The maps of :func:`decoder_jacobian` (see there for the arguments and the method).
    """
    return decoder_jacobian(model, z, cond, units, output).maps


def decoder_jacobian(
    model: GenerativeModel,
    z: Tensor,
    cond: Tensor | None = None,
    units: Sequence[int] | Tensor | None = None,
    output: str = "auto",
    chunk: int = UNIT_CHUNK,
    progress: bool = False,
) -> DecoderMaps:
    """Per-pixel mean over channels of |d decode(z) / d z_k|, for each unit k.

    Exact, by forward-mode AD (``torch.func.jvp`` vmapped over units), in eval mode (so a
    batch-norm decoder uses its running statistics and images stay independent). If forward
    AD fails on some layer of the decoder, central finite differences with step
    :data:`FD_STEP` are used instead and a warning is logged (``exact=False``).

    Args:
        model: a latentcam model (``decode``).
        z: (N, K) latents, usually mu.
        cond: (N, A) CVAE condition or None.
        units: the T units (default all K).
        output: "image" (recon in [0, 1]), "seg" (softmax part probabilities, sigmoid for a
            binary mask) or "auto" (the image when the model decodes one, else "seg").
        chunk: units per vmapped call.
        progress: show a progress bar over the chunks of units.

    Returns:
        :class:`DecoderMaps` with maps float32 (N, T, H, W) >= 0 on z's device, in output
        units per latent unit.
    """
    if not isinstance(z, Tensor) or z.dim() != 2:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise InputError(f"z must be a (N, K) tensor of latents; got {shape}")
    N, K = z.shape
    index = torch.arange(K) if units is None else torch.as_tensor(units, dtype=torch.long).flatten()
    if index.numel() == 0:
        raise InputError("units is empty; give unit indices, or None for all K")
    bad = [int(u) for u in index if not 0 <= int(u) < K]
    if bad:
        raise InputError(f"unit {bad[0]} is out of range: z has K={K} units (0..{K - 1})")
    z = z.detach() if z.is_floating_point() else z.detach().float()
    index = index.to(z.device)
    exact = True
    out = []
    starts = range(0, index.numel(), chunk)
    with eval_mode(model):
        for s in tqdm(starts, desc="decoder maps", disable=not progress, leave=False):
            part = index[s : s + chunk]
            if exact:
                try:
                    cols = _jacobian_columns(model, z, cond, part, output)
                except (RuntimeError, NotImplementedError) as err:
                    log.warning(
                        "forward-mode AD failed in %s's decoder (%s); decoder maps use central "
                        "finite differences (step %g) instead",
                        type(model).__name__,
                        err,
                        FD_STEP,
                    )
                    exact = False
            if not exact:
                cols = _fd_columns(model, z, cond, part, output)
            out.append(cols.detach().float().abs().mean(2).transpose(0, 1))
    return DecoderMaps(maps=torch.cat(out, dim=1), exact=exact)


def decoder_gram(
    model: GenerativeModel,
    z: Tensor,
    cond: Tensor | None = None,
    output: str = "auto",
    chunk: int = UNIT_CHUNK,
) -> Tensor:
    """The decoder's Jacobian Gram matrix averaged over latents: mean_n J_n^T J_n, (K, K).

    J_n = d decode(z_n) / d z (outputs flattened over channels and pixels, (D, K)), by
    forward-mode AD as :func:`decoder_jacobian` (finite differences where that fails). Its
    eigenvectors are the right-singular vectors of the Jacobian averaged over the data: the
    latent directions that move the output most (a decoder-side analogue of SeFa, Shen &
    Zhou 2021, for decoders that do not start with a linear layer).

    Args:
        model: a latentcam model (``decode``).
        z: (N, K) latents, usually mu.
        cond: (N, A) CVAE condition or None.
        output: as :func:`decoder_jacobian`.
        chunk: latent units per vmapped call.

    Returns:
        float64 (K, K), symmetric positive semi-definite, on the CPU.
    """
    if not isinstance(z, Tensor) or z.dim() != 2:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise InputError(f"z must be a (N, K) tensor of latents; got {shape}")
    N, K = z.shape
    z = z.detach().float()
    gram = torch.zeros(K, K, dtype=torch.float64)
    images_per_call = 8  # bounds memory: K x 8 Jacobian columns of one output each
    with eval_mode(model):
        for i in range(0, N, images_per_call):
            zi = z[i : i + images_per_call]
            ci = None if cond is None else cond[i : i + images_per_call]
            columns = []
            for s in range(0, K, chunk):
                part = torch.arange(s, min(s + chunk, K), device=z.device)
                try:
                    cols = _jacobian_columns(model, zi, ci, part, output)
                except (RuntimeError, NotImplementedError):
                    cols = _fd_columns(model, zi, ci, part, output)
                columns.append(cols.detach().flatten(2).float())  # (Tc, n, D)
            jac = torch.cat(columns)  # (K, n, D)
            gram += torch.einsum("knd,lnd->kl", jac, jac).double().cpu()
    return gram / N


def part_matrix(
    maps: Tensor, parts: Tensor, regions: Mapping[str, Sequence[int]] = REGIONS
) -> M.UnitPartTable:
    """The unit x part matrix of maps: each unit's share of map mass per face region.

    The same measure for encoder maps (Grad-CAM, upsampled), decoder maps
    (:func:`decoder_maps`) and effect maps: ``share[t, r] = sum_{n,p in r} maps / sum_{n,p}
    maps`` (:func:`latentcam.explain.metrics.unit_part_table`). Rows sum to 1.

    Args:
        maps: float (N, T, H, W) >= 0 at the parts' resolution.
        parts: integer (N, H, W) part ids 0..18.

    Returns:
        UnitPartTable: ``share`` (T, R), ``area`` (R,), ``regions`` (R names); ``lift`` =
        share / area.
    """
    return M.unit_part_table(maps, parts, regions)


def units_for_part(
    matrix: M.UnitPartTable, region: str, k: int = 5, units: Sequence[int] | None = None
) -> list[int]:
    """The reverse question: which units drive this part most.

    Units are ranked by their mass in the part relative to the part's area (lift, so that
    small parts such as the mouth are not drowned by the background); units whose maps are
    zero everywhere (NaN rows) are never listed.

    Args:
        matrix: from :func:`part_matrix` (usually of decoder maps).
        region: a region name (a column of the matrix).
        k: how many units.
        units: the unit index of each matrix row (default 0..T-1).

    Returns:
        up to ``k`` unit indices, strongest first.
    """
    if region not in matrix.regions:
        raise InputError(f"unknown region '{region}'; choose one of {', '.join(matrix.regions)}")
    col = matrix.lift[:, matrix.regions.index(region)]
    ids = list(range(col.shape[0])) if units is None else list(units)
    order = M.rank_units(col)
    return [ids[int(i)] for i in order[: max(k, 0)] if not bool(col[i].isnan())]


def map_agreement(a: Tensor, b: Tensor) -> Tensor:
    """Per unit, Spearman correlation over pixels of two maps, mean over images.

    Args:
        a, b: (N, T, H, W) (e.g. upsampled Grad-CAM and :func:`decoder_maps`).

    Returns:
        float (T,) in [-1, 1]. Where a map of ``a`` is constant (a Grad-CAM map that is zero
        everywhere) it ranks nothing and counts as 0, as in the localisation scores; NaN only
        where ``b`` is constant on every image.
    """
    flat = M.flat_maps(a)  # (N, T)
    rho = M.rank_correlation(a, b)
    return torch.where(flat, torch.zeros_like(rho), rho).nanmean(0)


def matrix_agreement(a: Tensor, b: Tensor, centre: bool = False) -> float:
    """Pearson correlation of two unit x part share matrices (T, R), rows normalised to sum 1.

    Units with a NaN entry on either side (no mass) are left out. Every row of a share
    matrix follows the regions' areas to some degree (a large background takes a large share
    of any map), which alone makes two matrices correlate; ``centre=True`` subtracts each
    region's mean share over the units first, so the score asks whether the units *differ*
    from each other in the same way on both sides.

    Returns:
        float in [-1, 1]; NaN when fewer than two entries remain or one side is constant.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise InputError(
            f"matrices must both be (T, R) and equal in shape; got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    a = a.double() / a.double().sum(1, keepdim=True)
    b = b.double() / b.double().sum(1, keepdim=True)
    keep = ~(a.isnan() | b.isnan()).any(1)
    a, b = a[keep], b[keep]
    if centre:
        a = a - a.mean(0, keepdim=True)
        b = b - b.mean(0, keepdim=True)
    x, y = a.flatten(), b.flatten()
    if x.numel() < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denom = float((x.square().sum() * y.square().sum()).sqrt())
    return float((x * y).sum()) / denom if denom > 0 else float("nan")


__all__ = [
    "DecoderMaps",
    "decoder_jacobian",
    "decoder_maps",
    "map_agreement",
    "matrix_agreement",
    "part_matrix",
    "units_for_part",
]
