"""Interpretability metrics: do the maps point at the face part a latent unit changes?

Every function is pure (tensors in, tensors out, on the inputs' device unless stated) and
says what it measures, its range and its source. Shape letters: B images, K latent units,
H W image size, R regions (:data:`latentcam.data.classes.REGIONS`), C classes.

- Localisation against part maps: :func:`energy_in_region` (Wang et al. 2020, Score-CAM's
  energy-based pointing game), :func:`pointing_game` (Zhang et al. 2016, excitation
  backprop), with :func:`region_share` as their chance level; :func:`region_scores` bundles
  the three for one named region.
- Which part does a unit move? :func:`unit_part_table` (share of a unit's expected effect
  map per region) and :func:`best_region` (highest share relative to the region's area).
- Agreement of two maps: :func:`rank_correlation` (Spearman over pixels; :func:`pearson`
  of precomputed ranks) and
  :func:`top_fraction_iou` (IoU of the top 10% pixels).
- Unit ranking: :func:`active_units` (mean KL above a threshold), :func:`effect_size`,
  :func:`rank_units`, :func:`units_by_kl` (the one KL ordering). Probes, MIG and DCI live in :mod:`latentcam.explain.disentangle`.
- Sanity check: :func:`cascading_randomisation` and :func:`passes_sanity` (Adebayo et al.
  2018, "Sanity checks for saliency maps").
- Segmentation: :func:`seg_iou` (per-class IoU and mIoU) and :func:`binary_iou`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from latentcam.data.classes import NUM_CLASSES, REGIONS
from latentcam.errors import InputError
from latentcam.models.base import kl_per_unit

log = logging.getLogger(__name__)

Tensor = torch.Tensor


# ----------------------------------------------------------------------------- helpers


def _check_maps(maps: Tensor, name: str = "maps") -> Tensor:
    if not isinstance(maps, Tensor) or maps.dim() != 4:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise InputError(f"{name} must be a tensor (B, K, H, W); got {shape}")
    return maps


def _check_mask(mask: Tensor, maps: Tensor, name: str = "region_mask") -> Tensor:
    """A boolean mask (B, H, W) or (H, W) matching the maps' image size, as bool (B, H, W)."""
    mask = torch.as_tensor(mask, device=maps.device)
    if mask.dim() == 2:
        mask = mask.unsqueeze(0).expand(maps.shape[0], -1, -1)
    if mask.dim() != 3 or mask.shape[-2:] != maps.shape[-2:] or mask.shape[0] != maps.shape[0]:
        raise InputError(
            f"{name} of shape {tuple(mask.shape)} does not fit maps of shape {tuple(maps.shape)}: "
            "give (B, H, W) or (H, W) at the maps' resolution (upsample the maps with "
            "latentcam.explain.cam.upsample first)"
        )
    return mask.bool()


def _check_parts(parts: Tensor, maps: Tensor) -> Tensor:
    parts = torch.as_tensor(parts, device=maps.device)
    if parts.dim() != 3 or parts.shape[0] != maps.shape[0] or parts.shape[-2:] != maps.shape[-2:]:
        raise InputError(
            f"parts of shape {tuple(parts.shape)} does not fit maps of shape {tuple(maps.shape)}: "
            "give one integer label map (B, H, W) per image, at the maps' resolution"
        )
    if parts.is_floating_point():
        raise InputError(f"parts must hold integer class ids, got dtype {parts.dtype}")
    parts = parts.long()
    if parts.numel() and (int(parts.min()) < 0 or int(parts.max()) >= NUM_CLASSES):
        raise InputError(
            f"parts holds ids {int(parts.min())}..{int(parts.max())}; expected 0..{NUM_CLASSES - 1} "
            "(CelebAMask-HQ class ids)"
        )
    return parts


def average_ranks(values: Tensor) -> Tensor:
    """1-based ranks along the last dimension, ties getting the mean of their ranks.

    The ranking used by Spearman's rho and the Mann-Whitney AUROC (as
    ``scipy.stats.rankdata(method="average")``).

    Args:
        values: float tensor (..., P).

    Returns:
        float64 tensor (..., P) with values in [1, P].
    """
    flat = values.detach().reshape(-1, values.shape[-1])
    if not flat.is_floating_point() or flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    ordered, order = flat.sort(dim=-1)
    P = flat.shape[-1]
    index = torch.int32 if P < 2**31 else torch.int64  # half the memory traffic of int64
    pos = torch.arange(P, device=flat.device, dtype=index).expand_as(ordered)
    differs = ordered[:, 1:] != ordered[:, :-1]
    edge = torch.ones(flat.shape[0], 1, dtype=torch.bool, device=flat.device)
    # each run of equal values spans sorted positions first..last; its rank is their mean + 1
    first = torch.where(torch.cat([edge, differs], 1), pos, 0).cummax(dim=-1).values
    last = (
        torch.where(torch.cat([differs, edge], 1), pos, P).flip(-1).cummin(dim=-1).values.flip(-1)
    )
    mean_rank = (first + last).to(torch.float64) / 2.0 + 1.0
    ranks = torch.empty(flat.shape, dtype=torch.float64, device=flat.device)
    ranks.scatter_(-1, order, mean_rank)
    return ranks.reshape(values.shape)


class Centred(NamedTuple):
    """Values minus their mean along the last dim, and the sum of squares of that (float64):
    one side of :func:`pearson_centred`, kept when one side is compared with several others."""

    values: Tensor  # (..., P)
    sum_sq: Tensor  # (...)


def centre(a: Tensor) -> Centred:
    """:class:`Centred` of ``a`` (..., P), in float64."""
    a = a.double()
    a = a - a.mean(-1, keepdim=True)
    return Centred(a, _dot_last(a, a))


def _dot_last(a: Tensor, b: Tensor) -> Tensor:
    """sum over the last dim of a * b, as a batched dot product (no (..., P) temporary)."""
    return torch.einsum("...p,...p->...", a, b)


def pearson_centred(a: Centred, b: Centred) -> Tensor:
    """Pearson correlation along the last dim of two :func:`centre` outputs (float64);
    NaN where either side is constant."""
    denom = (a.sum_sq * b.sum_sq).sqrt()
    corr = _dot_last(a.values, b.values) / denom
    return torch.where(denom > 0, corr, torch.full_like(corr, float("nan")))


def _pearson_last(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation along the last dim (float64); NaN where either side is constant."""
    return pearson_centred(centre(a), centre(b))


# ----------------------------------------------------------------------------- localisation


def region_share(region_mask: Tensor) -> Tensor:
    """Area share of a region per image: the chance level of both localisation scores.

    A uniform map puts exactly this share of its energy in the region, and a pixel drawn
    uniformly at random lands in the region with this probability.

    Args:
        region_mask: bool (B, H, W).

    Returns:
        float (B,) in [0, 1].
    """
    mask = torch.as_tensor(region_mask)
    if mask.dim() != 3:
        raise InputError(f"region_mask must be (B, H, W); got {tuple(mask.shape)}")
    return mask.float().mean(dim=(-2, -1))


def energy_in_region(maps: Tensor, region_mask: Tensor) -> Tensor:
    """Share of each map's total mass that lies inside a region.

    The "energy-based pointing game" of Wang et al. 2020 (Score-CAM, Sec. 5.2):
    ``sum(map * mask) / sum(map)``. Range [0, 1]; a uniform map scores
    :func:`region_share` of the mask (the chance level); NaN where a map sums to 0.

    Args:
        maps: float (B, K, H, W), >= 0, at image resolution (upsample first).
        region_mask: bool (B, H, W) or (H, W).

    Returns:
        float (B, K).
    """
    maps = _check_maps(maps)
    mask = _check_mask(region_mask, maps)
    if bool((maps < 0).any()):
        raise InputError("energy_in_region needs maps >= 0 (apply ReLU/abs first)")
    inside = torch.einsum("bkhw,bhw->bk", maps.float(), mask.float())
    total = maps.float().sum(dim=(-2, -1))
    share = inside / total
    return torch.where(total > 0, share, torch.full_like(share, float("nan")))


def pointing_game(maps: Tensor, region_mask: Tensor, tolerance: int = 0) -> Tensor:
    """Whether each map's maximum lies in the region (a "hit").

    Zhang et al. 2016 ("Top-down neural attention by excitation backprop", Sec. 5.1): a hit
    when the argmax pixel falls inside the region, here dilated by ``tolerance`` pixels
    (Chebyshev distance; Zhang et al. used 15 px at 224 px; 0 = the pixel itself). Ties go
    to the first pixel in row-major order. The hit rate's chance level is the region's area
    share (:func:`region_share`).

    Args:
        maps: float (B, K, H, W) at image resolution.
        region_mask: bool (B, H, W) or (H, W).
        tolerance: dilation radius in pixels (>= 0).

    Returns:
        bool (B, K).
    """
    maps = _check_maps(maps)
    mask = _check_mask(region_mask, maps)
    if tolerance < 0:
        raise InputError(f"tolerance must be >= 0 pixels, got {tolerance}")
    if tolerance > 0:
        size = 2 * tolerance + 1
        mask = (
            nn.functional.max_pool2d(mask.float().unsqueeze(1), size, stride=1, padding=tolerance)
            .squeeze(1)
            .bool()
        )
    B, K, H, W = maps.shape
    peak = maps.reshape(B, K, H * W).argmax(dim=-1)  # (B, K) flat pixel index
    return torch.gather(
        mask.reshape(B, 1, H * W).expand(B, K, H * W), 2, peak.unsqueeze(-1)
    ).squeeze(-1)


class RegionScores(NamedTuple):
    """Localisation of maps (B, K, H, W) against one region, with the chance level.

    Attributes:
        region: the region's name (a key of REGIONS).
        energy: (B, K) share of each map's energy inside the region.
        hits: (B, K) float, pointing-game hits (1 or 0).
        chance: (B,) the region's area share: the expected energy and hit rate of a map that
            ignores the image.
        flat: (B, K) bool, maps that are constant (e.g. zero everywhere after a ReLU). A flat
            map points nowhere: it is scored as a uniform map would be, energy = hits =
            chance, so it neither drops out of a mean nor scores a hit at pixel (0, 0).
    """

    region: str
    energy: Tensor
    hits: Tensor
    chance: Tensor
    flat: Tensor


def flat_maps(maps: Tensor) -> Tensor:
    """(B, K, H, W) -> (B, K) bool: maps that are constant (e.g. zero everywhere after a
    ReLU). Such a map points nowhere; the localisation scores count it as a uniform map."""
    values = maps.flatten(2)
    return values.amax(-1) <= values.amin(-1)


def region_scores(
    maps: Tensor,
    parts: Tensor,
    region: str,
    regions: Mapping[str, Sequence[int]] = REGIONS,
    tolerance: int = 0,
) -> RegionScores:
    """Energy share, pointing game and chance level of maps for one named region.

    Args:
        maps: float (B, K, H, W) >= 0 at image resolution.
        parts: integer label maps (B, H, W), CelebAMask-HQ ids 0..18.
        region: a key of ``regions`` (e.g. "mouth").
        regions: region name -> part ids (default :data:`REGIONS`).
        tolerance: pointing-game tolerance in pixels.
    """
    maps = _check_maps(maps)
    parts = _check_parts(parts, maps)
    if region not in regions:
        raise InputError(f"unknown region '{region}'; choose one of {', '.join(regions)}")
    ids = torch.as_tensor(tuple(regions[region]), device=parts.device, dtype=torch.long)
    mask = torch.isin(parts, ids)
    chance = region_share(mask)  # (B,)
    flat = flat_maps(maps)  # (B, K)
    uniform = chance[:, None].to(maps.dtype).expand_as(flat)
    energy = torch.where(flat, uniform, energy_in_region(maps, mask).to(maps.dtype))
    hits = torch.where(flat, uniform, pointing_game(maps, mask, tolerance=tolerance).to(maps.dtype))
    return RegionScores(region=region, energy=energy, hits=hits, chance=chance, flat=flat)


class UnitPartTable(NamedTuple):
    """Where each unit's effect falls, per face region.

    Attributes:
        share: float (K, R): share of unit k's expected effect map inside region r; each row
            sums to 1 when the regions cover every part id (REGIONS does); NaN rows for
            units whose effect is zero everywhere.
        area: float (R,): mean area share of each region over the images (the share a
            uniform effect would get).
        regions: the R region names, in column order.
    """

    share: Tensor
    area: Tensor
    regions: tuple[str, ...]

    @property
    def lift(self) -> Tensor:
        """(K, R) share / area: 1 = no more than a uniform map, > 1 = concentrated there.

        NaN for regions absent from every image.
        """
        area = torch.where(self.area > 0, self.area, torch.full_like(self.area, float("nan")))
        return self.share / area


def unit_part_table(
    effect_maps: Tensor, parts: Tensor, regions: Mapping[str, Sequence[int]] = REGIONS
) -> UnitPartTable:
    """For each unit, the share of its expected effect map that falls inside each region.

    share[k, r] = sum_b sum_px E[b, k] * 1[parts_b in r] / sum_b sum_px E[b, k], i.e. the
    batch-mean effect map measured against each image's own part map. Range [0, 1]; rows
    sum to 1 for a partition of the part ids. Effect maps are those of
    :func:`latentcam.explain.traversal.effect_maps` (the unit's effect on the decoded image).

    Args:
        effect_maps: float (B, K, H, W) >= 0 at image resolution.
        parts: integer label maps (B, H, W) with CelebAMask-HQ ids 0..18.
        regions: region name -> part ids (default :data:`REGIONS`).

    Returns:
        :class:`UnitPartTable` with share (K, R), area (R,), region names.
    """
    effect_maps = _check_maps(effect_maps, "effect_maps").float()
    parts = _check_parts(parts, effect_maps)
    if bool((effect_maps < 0).any()):
        raise InputError("unit_part_table needs effect maps >= 0 (absolute differences)")
    names = tuple(regions)
    total = effect_maps.sum(dim=(0, 2, 3))  # (K,)
    shares, areas = [], []
    for name in names:  # one pass per region (R = 13), never per image
        ids = torch.as_tensor(tuple(regions[name]), device=parts.device, dtype=torch.long)
        mask = torch.isin(parts, ids).float()  # (B, H, W)
        shares.append(torch.einsum("bkhw,bhw->k", effect_maps, mask))
        areas.append(mask.mean())
    share = torch.stack(shares, dim=1) / total.unsqueeze(1)  # (K, R)
    share = torch.where(total.unsqueeze(1) > 0, share, torch.full_like(share, float("nan")))
    return UnitPartTable(share=share, area=torch.stack(areas), regions=names)


class BestRegion(NamedTuple):
    """The region each unit moves most, relative to the region's size.

    Attributes:
        region_index: long (K,) column of the table (-1 for units with no effect).
        names: the K region names ("none" for units with no effect).
        lift: float (K,) share / area of that region (NaN for units with no effect).
        share: float (K,) the share of the unit's effect inside that region.
    """

    region_index: Tensor
    names: list[str]
    lift: Tensor
    share: Tensor


def best_region(table: UnitPartTable, min_share: float = 0.05) -> BestRegion:
    """Per unit, the region with the highest lift (share / area share).

    Ranking by raw share would always name the largest regions (background, hair, skin);
    lift asks where the effect is *concentrated*. Regions holding less than ``min_share`` of
    the unit's effect are not eligible (tiny regions such as earrings would otherwise win on
    noise); when no region reaches it, all regions are eligible.

    Args:
        table: from :func:`unit_part_table`.
        min_share: smallest share of the effect a region must hold to be named, in [0, 1].
    """
    lift = table.lift  # (K, R)
    eligible = (table.share >= min_share) & ~lift.isnan()
    none_eligible = ~eligible.any(dim=1, keepdim=True)
    eligible = eligible | (none_eligible & ~lift.isnan())
    scored = torch.where(eligible, lift, torch.full_like(lift, float("-inf")))
    index = scored.argmax(dim=1)
    dead = ~eligible.any(dim=1)
    index = torch.where(dead, torch.full_like(index, -1), index)
    safe = index.clamp(min=0).unsqueeze(1)
    best_lift = torch.gather(lift, 1, safe).squeeze(1)
    best_share = torch.gather(table.share, 1, safe).squeeze(1)
    nan = torch.full_like(best_lift, float("nan"))
    return BestRegion(
        region_index=index,
        names=["none" if i < 0 else table.regions[i] for i in index.tolist()],
        lift=torch.where(dead, nan, best_lift),
        share=torch.where(dead, nan, best_share),
    )


# ----------------------------------------------------------------------------- map agreement


def _check_pair(a: Tensor, b: Tensor) -> None:
    _check_maps(a, "a")
    _check_maps(b, "b")
    if a.shape != b.shape:
        raise InputError(
            f"maps to compare must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}; "
            "upsample the smaller ones with latentcam.explain.cam.upsample"
        )


def rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation between two maps, over pixels, per image and unit.

    Spearman 1904, with average ranks for ties (as ``scipy.stats.spearmanr``). Used to ask
    whether a unit's Grad-CAM map orders pixels like its effect map does, and by the
    cascading-randomisation sanity check (Adebayo et al. 2018). Range [-1, 1]; NaN where
    either map is constant.

    Args:
        a, b: float (B, K, H, W) of the same shape.

    Returns:
        float32 (B, K).
    """
    _check_pair(a, b)
    B, K = a.shape[:2]
    ra = average_ranks(a.reshape(B, K, -1))
    rb = average_ranks(b.reshape(B, K, -1))
    return _pearson_last(ra, rb).float()


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation along the last dimension, (..., P) x (..., P) -> (...).

    Of :func:`average_ranks` outputs it is Spearman's rho (as :func:`rank_correlation`);
    callers that compare one set of maps with several others rank each set once.
    Range [-1, 1]; NaN where either side is constant. float64.
    """
    if a.shape != b.shape:
        raise InputError(f"pearson needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _pearson_last(a.double(), b.double())


def top_fraction_iou(a: Tensor, b: Tensor, frac: float = 0.10) -> Tensor:
    """IoU of the top ``frac`` pixels of two maps, per image and unit.

    Each map's n = ceil(frac * H * W) highest pixels form a set (ties broken by
    ``torch.topk``); the score is |A and B| / |A or B|. Range [0, 1]; two independent
    random maps score about frac / (2 - frac) (0.053 at 10%).

    Args:
        a, b: float (B, K, H, W) of the same shape.
        frac: fraction of pixels in (0, 1].

    Returns:
        float32 (B, K).
    """
    _check_pair(a, b)
    top_a, top_b = top_fraction(a, frac), top_fraction(b, frac)
    return top_iou(top_a, top_b)


def top_fraction(maps: Tensor, frac: float = 0.10) -> Tensor:
    """The top ``frac`` pixels of each map (ties broken by ``torch.topk``), as a mask.

    Args:
        maps: float (B, K, H, W).
        frac: fraction of pixels in (0, 1]; n = ceil(frac * H * W) pixels are kept.

    Returns:
        bool (B, K, H*W).
    """
    if not 0.0 < frac <= 1.0:
        raise InputError(f"frac must be in (0, 1], got {frac}")
    B, K, H, W = maps.shape
    n = max(1, int(torch.tensor(frac * H * W).ceil().item()))
    top = torch.zeros(B, K, H * W, dtype=torch.bool, device=maps.device)
    return top.scatter_(2, maps.reshape(B, K, -1).topk(n, dim=-1).indices, True)


def top_iou(top_a: Tensor, top_b: Tensor) -> Tensor:
    """|A and B| / |A or B| of two :func:`top_fraction` masks (B, K, P) -> float32 (B, K)."""
    inter = (top_a & top_b).sum(-1).float()
    union = (top_a | top_b).sum(-1).float()
    return inter / union


# ----------------------------------------------------------------------------- unit ranking


def active_units(kl_per_unit: Tensor, threshold: float = 0.01) -> Tensor:
    """Units whose mean KL to the prior exceeds ``threshold`` nats.

    A unit whose posterior equals the prior for every image carries no information (it is
    "collapsed"); the KL form of the activity criterion of Burda et al. 2016. Compute
    ``kl_per_unit`` with ``latentcam.models.base.kl_per_unit``.

    Args:
        kl_per_unit: float (K,) mean KL per unit in nats, or (N, K) per image (averaged).
        threshold: in nats (0.01, as in the training logs).

    Returns:
        bool (K,).
    """
    kl = torch.as_tensor(kl_per_unit)
    if kl.dim() == 2:
        kl = kl.mean(0)
    if kl.dim() != 1:
        raise InputError(f"kl_per_unit must be (K,) or (N, K); got {tuple(kl.shape)}")
    return kl > threshold


def effect_size(effect_maps: Tensor) -> Tensor:
    """Mean absolute effect of each unit on the decoded image: mean over images and pixels.

    The size of :func:`latentcam.explain.traversal.effect_maps`; in image intensity units
    ([0, 1] for images in [0, 1]). One way to rank "the most significant latent nodes"
    (the paper's open question, Sec. 5.4).

    Args:
        effect_maps: float (B, K, H, W).

    Returns:
        float (K,).
    """
    return _check_maps(effect_maps, "effect_maps").abs().float().mean(dim=(0, 2, 3))


def rank_units(scores: Tensor, descending: bool = True) -> Tensor:
    """Unit indices ordered by score (highest first by default); NaN scores come last.

    Args:
        scores: float (K,) e.g. mean KL, :func:`effect_size`, or a probe score row.

    Returns:
        long (K,).
    """
    scores = torch.as_tensor(scores).float()
    if scores.dim() != 1:
        raise InputError(f"scores must be (K,); got {tuple(scores.shape)}")
    fill = float("-inf") if descending else float("inf")
    clean = torch.where(scores.isnan(), torch.full_like(scores, fill), scores)
    return torch.sort(clean, descending=descending, stable=True).indices


#: Images the KL ranking is computed on: the first ones of what a tool holds (the report,
#: ``explain`` and the app all hold the first images of the validation split), so that every
#: tool lists the same units in the same order.
RANKING_IMAGES = 64


def units_by_kl(mu: Tensor, logvar: Tensor) -> list[int]:
    """The units ordered by mean KL (nats) over the first :data:`RANKING_IMAGES` images,
    highest first, ties in index order: the one "top by KL" ordering of latentcam.

    Args:
        mu, logvar: float (N, K) posterior parameters of the first N images of the
            validation split (N >= :data:`RANKING_IMAGES` for the shared ordering).

    Returns:
        K unit indices.
    """
    n = min(RANKING_IMAGES, int(mu.shape[0]))
    kl = kl_per_unit(mu[:n].detach().float(), logvar[:n].detach().float()).cpu()
    return [int(k) for k in rank_units(kl)]


# ----------------------------------------------------------------------------- sanity check


class RandomisationStep(NamedTuple):
    """One step of the cascading randomisation curve.

    Attributes:
        layer: the module re-initialised at this step (all modules above it already are).
        correlation: mean Spearman correlation, over images and units, between the maps of
            the partly randomised model and the trained model's maps. A map that became
            constant counts 0 (it keeps no ordering); maps that were constant on the trained
            model are left out.
    """

    layer: str
    correlation: float


def encoder_parameter_layers(model: nn.Module, x: Tensor, cond: Tensor | None = None) -> list[str]:
    """Names of the modules with their own parameters that ``model.encode`` runs, top first.

    "Top" is the module closest to mu (the head), as in Adebayo et al.'s cascade, which
    randomises from the output down.
    """
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if name and any(True for _ in module.parameters(recurse=False)):

            def hook(_mod: nn.Module, _inp: object, _out: object, name: str = name) -> None:
                if name not in order:
                    order.append(name)

            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            encode = getattr(model, "encode", None)
            if callable(encode):
                encode(x[:1], cond[:1] if cond is not None else None)
            else:
                model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return order[::-1]


def _reinitialise(module: nn.Module) -> None:
    """Fresh random weights for a module and its children (their own init schemes)."""
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()
        elif any(True for _ in sub.parameters(recurse=False)):
            # No init scheme of its own: redraw from a normal with the trained scale.
            for p in sub.parameters(recurse=False):
                std = float(p.detach().std()) if p.numel() > 1 else 0.02
                with torch.no_grad():
                    p.normal_(0.0, std if std > 0 else 0.02)


def cascading_randomisation(
    model: nn.Module,
    x: Tensor,
    maps_fn: Callable[[nn.Module, Tensor], Tensor],
    layers: Sequence[str] | None = None,
    seed: int = 0,
    cond: Tensor | None = None,
) -> list[RandomisationStep]:
    """Cascading model-parameter randomisation test (Adebayo et al. 2018, Sec. 3.1).

    A copy of the model has its encoder layers re-initialised from the top (closest to mu)
    down, cumulatively; after each step the maps are recomputed with ``maps_fn`` and
    compared with the trained model's maps by :func:`rank_correlation`. Maps that explain
    the model must change as its weights are destroyed: the curve should fall. The model
    itself is not modified, and the global random state is left as it was.

    Args:
        model: the trained model.
        x: images (B, 3, H, W) on the model's device.
        maps_fn: ``maps_fn(model, x) -> (B, K, h, w)`` maps, e.g.
            ``lambda m, x: latent_cams(m, x).maps``.
        layers: module names to randomise, in order (top first); default: every module
            with parameters that ``model.encode`` runs, from the head down
            (:func:`encoder_parameter_layers`).
        seed: seed of the new random weights.
        cond: condition (B, A) for a CVAE, used only to find the encoder's layers.

    Returns:
        one :class:`RandomisationStep` per layer, in the order randomised.
    """
    if layers is None:
        layers = encoder_parameter_layers(model, x, cond)
    if not layers:
        raise InputError("cascading_randomisation found no encoder layers with parameters")
    trained = maps_fn(model, x).detach()
    _check_maps(trained, "maps_fn(model, x)")
    rankable = trained.flatten(2).std(dim=-1) > 0  # (B, K) maps that can be ranked
    if not bool(rankable.any()):
        raise InputError("every map of the trained model is constant: nothing to compare")
    shadow = copy.deepcopy(model)
    modules = dict(shadow.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise InputError(
            f"unknown layer(s) {missing}; modules with parameters: "
            f"{', '.join(encoder_parameter_layers(model, x, cond))}"
        )
    curve: list[RandomisationStep] = []
    device = x.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for name in layers:
            _reinitialise(modules[name])
            maps = maps_fn(shadow, x).detach()
            if maps.shape != trained.shape:
                raise InputError(
                    f"maps_fn returned {tuple(maps.shape)} after randomising {name}, "
                    f"{tuple(trained.shape)} before"
                )
            corr = rank_correlation(trained, maps).nan_to_num(0.0)
            mean = float(corr[rankable].mean())
            log.debug("randomised %s: mean rank correlation %.3f", name, mean)
            curve.append(RandomisationStep(layer=name, correlation=mean))
    return curve


def passes_sanity(curve: Sequence[RandomisationStep], threshold: float = 0.5) -> bool:
    """Whether maps changed once the encoder was fully randomised (Adebayo et al. 2018).

    Passes when the last step's mean rank correlation with the trained maps is below
    ``threshold``; maps that do not depend on the weights stay near 1 and fail.
    """
    if not curve:
        raise InputError("empty randomisation curve: run cascading_randomisation first")
    return bool(curve[-1].correlation < threshold)


# ----------------------------------------------------------------------------- segmentation


class SegIoU(NamedTuple):
    """Segmentation overlap.

    Attributes:
        per_class: float (C,) IoU of each class; NaN for classes absent from both the
            prediction and the target.
        miou: mean over the classes that are not NaN.
    """

    per_class: Tensor
    miou: float


def seg_iou(
    pred_labels: Tensor, target_labels: Tensor, num_classes: int, ignore_index: int | None = None
) -> SegIoU:
    """Per-class intersection over union (Jaccard 1912) and its mean, over all pixels.

    Pixels are pooled over the whole batch (as ``torchmetrics`` MulticlassJaccardIndex with
    ``average="none"``), but classes absent from both maps are NaN and left out of the mean
    rather than counted as 0 or 1. Range [0, 1].

    Args:
        pred_labels, target_labels: integer (B, H, W) class ids in [0, num_classes).
        num_classes: C.
        ignore_index: target id whose pixels are left out (e.g. 255), or None.
    """
    pred = torch.as_tensor(pred_labels).long().flatten()
    target = torch.as_tensor(target_labels).long().flatten().to(pred.device)
    if pred.shape != target.shape:
        raise InputError(
            f"pred_labels {tuple(pred_labels.shape)} and target_labels "
            f"{tuple(target_labels.shape)} must have the same shape"
        )
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for name, labels in (("pred_labels", pred), ("target_labels", target)):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise InputError(
                f"{name} holds ids {int(labels.min())}..{int(labels.max())}, outside 0..{num_classes - 1}"
            )
    confusion = torch.bincount(target * num_classes + pred, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes).double()  # rows: target, cols: pred
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp
    per_class = torch.where(union > 0, tp / union, torch.full_like(tp, float("nan")))
    valid = ~per_class.isnan()
    miou = float(per_class[valid].mean()) if bool(valid.any()) else float("nan")
    return SegIoU(per_class=per_class.float(), miou=miou)


def binary_iou(pred: Tensor, target: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of binary masks, per image (the paper's "IOU score" of the face mask, Sec. 5.3).

    Args:
        pred: (B, H, W) or (B, 1, H, W): bool, {0, 1}, or probabilities thresholded at
            ``threshold``.
        target: same shape, bool or {0, 1}.

    Returns:
        float (B,) in [0, 1]; NaN where both masks are empty.
    """
    pred = torch.as_tensor(pred)
    target = torch.as_tensor(target, device=pred.device)
    if pred.shape != target.shape or pred.dim() not in (3, 4):
        raise InputError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must be equal (B, H, W) "
            "or (B, 1, H, W) masks"
        )
    p = pred > threshold if pred.is_floating_point() else pred.bool()
    t = target > 0.5 if target.is_floating_point() else target.bool()
    p, t = p.flatten(1), t.flatten(1)
    inter = (p & t).sum(1).float()
    union = (p | t).sum(1).float()
    return torch.where(union > 0, inter / union, torch.full_like(union, float("nan")))
