"""Which layer to explain: layer specs, multi-layer fusion, localisation scores, ``auto``.

The paper (and Liu et al., CVPR 2020) explain the last encoder conv, which is a 4x4 map for a
64 px face: its heatmaps look plausible and do not localise (DESIGN.md, last section). This
module is the one place where the explained layer is chosen:

- :func:`parse_layers`: the layer spec shared by the CLI and the API. Words:
  ``default`` (``model.explain_layer``, the paper's layer: the last encoder conv),
  ``all`` (every encoder block, :meth:`encoder_layers`), ``fusion`` (the fused maps of
  :func:`fusion_layers`), ``auto`` (chosen by :func:`choose_layer`), or dotted module names.
- :func:`fuse_maps` / :func:`fused_cams`: maps of several layers, each min-max normalised
  and upsampled to the image, combined (mean by default, geometric mean or max). LayerCAM
  (Jiang et al., IEEE TIP 2021, Sec. III-C) fuses shallow and deep layers this way.
- :class:`CamBank`: maps of every (layer, method) pair computed once per batch and reused.
- :func:`localisation_scores`: per unit, how well a map lands on the region the unit moves
  (energy in part, Wang et al. 2020; pointing game, Zhang et al. 2016, with its chance level)
  and agrees with the unit's effect map and decoder map (Spearman over pixels; IoU of the
  top 10% pixels).
- :func:`compare_layers` and :func:`choose_layer`: the (layer, method) table and the pick.

How ``auto`` combines the scores (:func:`pick_best`): with part masks, each candidate is
ranked on three means over the active units, (pointing game - chance), energy in part and
Spearman(Grad-CAM, effect map); the candidate with the lowest mean rank wins (ties go to
the higher mean of the three raw scores). Without masks only the Spearman agreement with
the effect maps is used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from latentcam.errors import InputError
from latentcam.explain import metrics as M
from latentcam.explain.cam import (
    cams_by_layer,
    latent_cams,
    normalise,
    upsample,
)
from latentcam.explain.targets import Target
from latentcam.explain.traversal import effect_maps
from latentcam.models.base import kl_per_unit, resolve_layer

log = logging.getLogger(__name__)

Tensor = torch.Tensor

#: Pseudo-layer name of the fused maps (see :func:`fusion_layers`).
FUSION = "fusion"
#: Spec word: let :func:`choose_layer` pick the layer.
AUTO = "auto"
#: Spec word: the model's own layer (``model.explain_layer``), the paper's choice.
DEFAULT = "default"
#: Spec word: every encoder block.
ALL = "all"
#: How :func:`fuse_maps` combines maps.
FUSE_HOW = ("mean", "geomean", "max")
#: Encoder blocks with maps at least this wide join the fusion (plus the last block).
FUSION_MIN_SIZE = 8
#: Images per engine call in :class:`CamBank`.
CHUNK = 16
#: The localisation keys every score dict / comparison row carries.
SCORE_KEYS = (
    "energy_in_part",
    "pointing_game",
    "chance",
    "spearman_cam_effect",
    "top10_iou_cam_effect",
    "spearman_cam_decoder",
    "dead_fraction",
)


# ----------------------------------------------------------------------------- layer specs


def _side(model: nn.Module, name: str) -> int | None:
    shapes = getattr(model, "encoder_shapes", None)
    if callable(shapes):
        for shape in shapes():
            if shape.name == name:
                return int(shape.size)
    return None


def encoder_blocks(model: nn.Module) -> list[str]:
    """The encoder's conv blocks, shallow (high resolution) to deep (``model.encoder_layers``)."""
    layers = getattr(model, "encoder_layers", None)
    if not callable(layers):
        raise InputError(
            f"{type(model).__name__} lists no encoder layers (encoder_layers()); "
            "name the layers to explain"
        )
    return list(layers())


def fusion_layers(model: nn.Module) -> list[str]:
    """The blocks fused by the ``fusion`` layer: every encoder block whose map is at least
    :data:`FUSION_MIN_SIZE` pixels wide, plus the last block (the paper's layer).

    Maps narrower than 8x8 cannot place a face part (a 4x4 cell of a 64 px face holds an
    eye and a brow); the last block is kept because it carries the most semantic channels.
    For a 64 px, 4-block VAE (32, 16, 8, 4) that is all four blocks. A model that does not
    report its block sizes fuses all its blocks.
    """
    blocks = encoder_blocks(model)
    chosen = [b for b in blocks[:-1] if (_side(model, b) or FUSION_MIN_SIZE) >= FUSION_MIN_SIZE]
    return [*chosen, blocks[-1]]


@dataclass(frozen=True)
class LayerRequest:
    """A parsed layer spec.

    Attributes:
        layers: the layers to explain, in the order given, without duplicates: dotted
            module names and/or :data:`FUSION`. Empty when only ``auto`` was asked.
        auto: whether ``auto`` was asked (pick by :func:`choose_layer`).
    """

    layers: list[str]
    auto: bool = False


def parse_layers(model: nn.Module, spec: Sequence[str] | str | None) -> LayerRequest:
    """Expand a layer spec (CLI ``--layer ...`` or API ``layers=``) and check every name.

    Args:
        model: the model (names are checked against its modules).
        spec: None or ``"default"`` (the paper's layer, ``model.explain_layer``), ``"all"``,
            ``"fusion"``, ``"auto"``, a dotted name, or a sequence of these.

    Raises:
        InputError: an unknown layer name (with close matches, from
            :func:`latentcam.models.base.resolve_layer`).
    """
    if spec is None:
        spec = [DEFAULT]
    elif isinstance(spec, str):
        spec = [spec]
    words = [w for item in spec for w in str(item).replace(",", " ").split()]
    if not words:
        raise InputError("no layer given; use a layer name, default, all, fusion or auto")
    layers: list[str] = []
    auto = False
    for word in words:
        if word == AUTO:
            auto = True
            continue
        if word == DEFAULT:
            names = [resolve_layer(model, None)[0]]
        elif word == ALL:
            names = encoder_blocks(model)
        elif word == FUSION:
            fusion_layers(model)  # a model without encoder blocks fails here
            names = [FUSION]
        else:
            names = [resolve_layer(model, word)[0]]
        layers += [n for n in names if n not in layers]
    return LayerRequest(layers=layers, auto=auto)


def auto_candidates(model: nn.Module) -> list[str]:
    """What ``auto`` chooses from: every encoder block, then the fusion."""
    return [*encoder_blocks(model), FUSION]


# ----------------------------------------------------------------------------- fusion


def fuse_maps(maps: Sequence[Tensor], size: int | tuple[int, int], how: str = "mean") -> Tensor:
    """Combine maps of several layers into one map per image and target.

    Each map (B, T, h_i, w_i) is min-max normalised per map (:func:`cam.normalise`, so that
    every layer weighs the same), upsampled bilinearly to ``size`` (:func:`cam.upsample`) and
    the layers are combined pixelwise: ``mean`` (default), ``geomean`` ((prod m_i)^(1/L):
    a pixel must be high at every layer) or ``max``. LayerCAM (Jiang et al. 2021) fuses
    shallow and deep layers to get fine and semantic maps at once.

    Args:
        maps: L >= 1 tensors (B, T, h_i, w_i) float >= 0, same B and T.
        size: H or (H, W) of the output.
        how: one of :data:`FUSE_HOW`.

    Returns:
        float (B, T, H, W) in [0, 1]; a map that is constant at every layer is 0.
    """
    if how not in FUSE_HOW:
        raise InputError(f"unknown fusion '{how}'; choose one of: {', '.join(FUSE_HOW)}")
    if not maps:
        raise InputError("fuse_maps needs at least one map")
    lead = maps[0].shape[:2]
    for m in maps:
        if m.dim() != 4 or m.shape[:2] != lead:
            raise InputError(
                f"maps to fuse must all be (B, T, h, w) with the same B, T = {tuple(lead)}; "
                f"got {tuple(m.shape)}"
            )
    stacked = torch.stack([upsample(normalise(m.float(), per="map"), size) for m in maps])
    stacked = stacked.clamp(0.0, 1.0)  # bilinear upsampling stays in range; rounding aside
    if how == "mean":
        return stacked.mean(0)
    if how == "max":
        return stacked.amax(0)
    return stacked.clamp_min(1e-12).log().mean(0).exp() * (stacked > 0).all(0)


def fused_cams(
    model: nn.Module,
    x: Tensor,
    cond: Tensor | None = None,
    units: Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
    method: str = "gradcam",
    how: str = "mean",
) -> Tensor:
    """Maps of latent units at several layers, fused (:func:`fuse_maps`) at image size.

    Args:
        model, x, cond, units, method: as :func:`latentcam.explain.cam.latent_cams`.
        layers: the layers fused (default :func:`fusion_layers`).
        how: mean | geomean | max.

    Returns:
        float (B, T, H, W) in [0, 1].
    """
    names = list(layers) if layers is not None else fusion_layers(model)
    maps = [
        latent_cams(model, x, cond=cond, units=units, layer=n, method=method).maps for n in names
    ]
    return fuse_maps(maps, tuple(x.shape[-2:]), how=how)  # type: ignore[arg-type]


class CamBank:
    """Maps of all K units (or of given targets) of a batch per (layer, method), computed
    once and reused.

    Layer-resolution maps are kept on the CPU ((N, T, h, w) float32: 13 MB for 32 images,
    T=100 at 32x32); image-resolution maps are made on request for the columns asked.

    Args:
        model, images, cond: the model and the batch (N images) it explains.
        fuse_how: how the :data:`FUSION` layer combines maps.
        targets: the T targets (e.g. :func:`latentcam.explain.targets.direction_targets`);
            None for every latent unit (T = K, column k = unit k).
    """

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        cond: Tensor | None,
        fuse_how: str = "mean",
        targets: Sequence[Target] | None = None,
    ) -> None:
        self.model = model
        self.images = images
        self.cond = cond
        self.fuse_how = fuse_how
        self.targets = None if targets is None else list(targets)
        self._maps: dict[tuple[str, str], Tensor] = {}

    def layer_maps(self, layer: str, method: str) -> Tensor:
        """(N, T, h, w) unnormalised maps of every target at a real layer, on the CPU."""
        if (layer, method) not in self._maps:
            self.prefetch(layer, [method])
        return self._maps[(layer, method)]

    def prefetch(self, layer: str, methods: Sequence[str]) -> None:
        """Compute the maps of several methods at a real layer (see :meth:`prefetch_layers`)."""
        self.prefetch_layers([layer], methods)

    def prefetch_layers(
        self, layers: Sequence[str], methods: Sequence[str], progress: bool = False
    ) -> None:
        """Compute the maps of several methods at several real layers from ONE gradient pass.

        Every method is a weighting of the same gradients dmu_k/dA
        (:func:`latentcam.explain.cam.cam_from_grads`), and the backward from mu to the
        shallowest layer passes through every deeper one, so the costly batched backward
        runs once per chunk of images, not once per layer and method
        (:func:`latentcam.explain.cam.cams_by_layer`). Where the path from a layer to mu is
        affine the engine's exact shortcut is used instead (no backward at all).
        ``progress``: a bar over the chunks of images.
        """
        todo = {
            layer: [m for m in dict.fromkeys(methods) if (layer, m) not in self._maps]
            for layer in dict.fromkeys(layers)
        }
        todo = {layer: ms for layer, ms in todo.items() if ms}
        if not todo:
            return
        wanted = list(dict.fromkeys(m for ms in todo.values() for m in ms))
        out: dict[tuple[str, str], list[Tensor]] = {}
        starts = range(0, self.images.shape[0], CHUNK)
        for s in tqdm(starts, desc="gradients", disable=not progress, leave=False):
            x = self.images[s : s + CHUNK]
            c = None if self.cond is None else self.cond[s : s + CHUNK]
            results = cams_by_layer(self.model, x, list(todo), wanted, cond=c, targets=self.targets)
            for layer, ms in todo.items():
                for m in ms:
                    out.setdefault((layer, m), []).append(results[layer][m].maps.cpu())
        for key, parts in out.items():
            self._maps[key] = torch.cat(parts)

    def map_size(self, layer: str) -> list[int]:
        """[h, w] of a layer's maps; the image size for :data:`FUSION`."""
        if layer == FUSION:
            return list(self.images.shape[-2:])
        side = _side(self.model, layer)
        if side is not None:
            return [side, side]
        res = latent_cams(
            self.model,
            self.images[:1],
            cond=None if self.cond is None else self.cond[:1],
            units=[0],
            layer=layer,
        )
        return list(res.maps.shape[-2:])

    def image_maps(self, layer: str, method: str, units: Sequence[int] | Tensor) -> Tensor:
        """(N, T', H, W) maps of columns ``units`` (unit or target indices) at image size;
        fused maps for :data:`FUSION`."""
        index = torch.as_tensor(units, dtype=torch.long)
        size = tuple(self.images.shape[-2:])
        if layer == FUSION:
            parts = [self.layer_maps(n, method)[:, index] for n in fusion_layers(self.model)]
            return fuse_maps(parts, size, how=self.fuse_how)  # type: ignore[arg-type]
        return upsample(self.layer_maps(layer, method)[:, index], size)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- scores


def mean_finite(t: Tensor) -> float:
    """Mean of the non-NaN entries (NaN when there are none)."""
    t = t.float()
    t = t[~t.isnan()]
    return float(t.mean()) if t.numel() else float("nan")


def _ranks(maps: Tensor) -> Tensor:
    """Average ranks over the pixels of each map: (N, T, H, W) -> (N, T, H*W) float64."""
    return M.average_ranks(maps.reshape(*maps.shape[:2], -1))


class Reference(NamedTuple):
    """What every heatmap is compared with, prepared once (:func:`reference_of`): the
    centred pixel ranks of the effect maps and of the decoder maps (Spearman's rho is the
    Pearson correlation of ranks) and the effect maps' top-10% pixel masks."""

    effect_ranks: M.Centred  # values (N, T, H*W) float64
    effect_top: Tensor  # bool (N, T, H*W)
    decoder_ranks: M.Centred | None


def reference_of(effects: Tensor, decoder: Tensor | None = None) -> Reference:
    """:class:`Reference` of effect maps (N, T, H, W) and decoder maps (same shape) or None."""
    return Reference(
        effect_ranks=M.centre(_ranks(effects)),
        effect_top=M.top_fraction(effects, 0.10),
        decoder_ranks=None if decoder is None else M.centre(_ranks(decoder)),
    )


def localisation_scores(
    cams: Tensor,
    effects: Tensor,
    parts: Tensor | None,
    regions: Sequence[str],
    decoder: Tensor | None = None,
    reference: Reference | None = None,
) -> dict[str, Tensor]:
    """Per-unit localisation scores of maps against each unit's region and its effect map.

    Args:
        cams: (N, T, H, W) >= 0 heatmaps at image size.
        effects: (N, T, H, W) effect maps of the same units
            (:func:`latentcam.explain.traversal.effect_maps`).
        parts: (N, H, W) part ids, or None (then only the agreement scores).
        regions: T region names (keys of REGIONS) each unit moves, "none" for no region.
        decoder: (N, T, H, W) decoder gradient maps (:mod:`latentcam.explain.decoder`), or None.
        reference: :func:`reference_of` ``(effects, decoder)`` when already known: saves
            ranking them again for every layer and method.

    Returns:
        name -> float (T,): ``spearman_cam_effect`` (Spearman over pixels, mean over images
        whose maps are not constant), ``top10_iou_cam_effect``, with parts ``energy_in_part``,
        ``pointing_game`` (hit rate), ``chance`` (area share of the region), and with a
        decoder ``spearman_cam_decoder``. NaN where not computable.
    """
    if cams.shape != effects.shape or len(regions) != cams.shape[1]:
        raise InputError(
            f"cams {tuple(cams.shape)}, effects {tuple(effects.shape)} and {len(regions)} "
            "regions must describe the same (N, T) maps"
        )
    # A map that is constant (zero everywhere: ReLU of a negative sum) points nowhere. It is
    # scored as a uniform map: correlation 0, energy and pointing at chance (region_scores),
    # so layers whose maps die are not scored on their few live maps only.
    flat = M.flat_maps(cams)  # (N, T)
    cam_ranks = M.centre(_ranks(cams))
    if reference is None:
        reference = reference_of(effects, decoder)

    def agreement(other_ranks: M.Centred) -> Tensor:
        rho = M.pearson_centred(cam_ranks, other_ranks).float()
        return torch.where(flat, torch.zeros_like(rho), rho).nanmean(0)

    cam_top = M.top_fraction(cams, 0.10)
    out = {
        "spearman_cam_effect": agreement(reference.effect_ranks),
        "top10_iou_cam_effect": M.top_iou(cam_top, reference.effect_top).float().nanmean(0),
        "dead_fraction": flat.float().mean(0),
    }
    if decoder is not None:
        assert reference.decoder_ranks is not None, "reference_of(effects, decoder) needed"
        out["spearman_cam_decoder"] = agreement(reference.decoder_ranks)
    if parts is not None:
        T = cams.shape[1]
        energy = torch.full((T,), float("nan"))
        hits = torch.full((T,), float("nan"))
        chance = torch.full((T,), float("nan"))
        for region in sorted(set(regions) - {"none"}):  # one call per region, not per unit
            cols = [k for k, r in enumerate(regions) if r == region]
            sc = M.region_scores(cams[:, cols], parts, region)
            energy[cols] = sc.energy.float().mean(0).cpu()
            hits[cols] = sc.hits.float().mean(0).cpu()
            chance[cols] = sc.chance.float().mean().cpu()
        out.update(energy_in_part=energy, pointing_game=hits, chance=chance)
    return out


@dataclass
class ComparisonRow:
    """Localisation of one (layer, method) pair: means over the scored units (NaN if none)."""

    layer: str
    method: str
    map_size: list[int]
    energy_in_part: float = float("nan")
    pointing_game: float = float("nan")
    chance: float = float("nan")
    spearman_cam_effect: float = float("nan")
    top10_iou_cam_effect: float = float("nan")
    spearman_cam_decoder: float = float("nan")
    dead_fraction: float = float("nan")
    #: score name -> float (T,) per scored unit (:func:`localisation_scores`), not in as_dict
    per_unit: dict[str, Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("layer", "method", "map_size", *SCORE_KEYS)}


def compare_layers(
    bank: CamBank,
    layers: Sequence[str],
    methods: Sequence[str],
    units: Sequence[int],
    effects: Tensor,
    parts: Tensor | None,
    regions: Sequence[str],
    decoder: Tensor | None = None,
    progress: bool = False,
) -> list[ComparisonRow]:
    """One :class:`ComparisonRow` per (layer, method): mean localisation over ``units``
    (and, in ``per_unit``, the scores of each unit).

    Args:
        bank: the batch's maps.
        layers: real layer names and/or :data:`FUSION`.
        methods: CAM methods (gradcam, layercam, hirescam, ...).
        units: the T units scored (the active ones).
        effects: (N, T, H, W) effect maps of those units.
        parts: (N, H, W) part ids or None.
        regions: T region names, one per unit.
        decoder: (N, T, H, W) decoder maps of those units, or None.
        progress: show a progress bar.
    """
    rows = []
    real = {
        n for layer in layers for n in (fusion_layers(bank.model) if layer == FUSION else [layer])
    }
    bank.prefetch_layers(sorted(real), methods, progress=progress)
    reference = reference_of(effects, decoder)
    sizes = {layer: bank.map_size(layer) for layer in layers}
    pairs = [(layer, method) for layer in layers for method in methods]
    for layer, method in tqdm(pairs, desc="layer x method", disable=not progress, leave=False):
        cams = bank.image_maps(layer, method, units)
        scores = localisation_scores(cams, effects, parts, regions, decoder, reference)
        row = ComparisonRow(layer=layer, method=method, map_size=sizes[layer])
        for name, values in scores.items():
            setattr(row, name, mean_finite(values))
        row.per_unit = scores
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- choice


@dataclass
class LayerChoice:
    """The layer (and method) that localises best, with the evidence.

    Attributes:
        layer: dotted name or :data:`FUSION`.
        method: the CAM method of the winning row.
        scores: candidate ("layer" or "layer/method" when several methods) -> its mean scores.
        reason: one sentence with the numbers, the paper's layer included.
    """

    layer: str
    method: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    reason: str = ""


def _rank(values: list[float]) -> list[float]:
    """Average 1-based ranks, best (highest) first; NaN ranks last."""
    clean = torch.tensor([-math.inf if math.isnan(v) else v for v in values], dtype=torch.float64)
    return (len(values) + 1 - M.average_ranks(clean)).tolist()


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _describe(row: ComparisonRow, has_parts: bool) -> str:
    size = "x".join(map(str, row.map_size)) if row.layer != FUSION else "fused"
    head = f"{row.layer} ({size}, {row.method})"
    if has_parts:
        return (
            f"{head}: pointing {_num(row.pointing_game)} vs chance {_num(row.chance)}, "
            f"energy {_num(row.energy_in_part)}, agreement {_num(row.spearman_cam_effect)}"
        )
    return f"{head}: agreement with effect maps {_num(row.spearman_cam_effect)}"


def pick_best(
    rows: Sequence[ComparisonRow], has_parts: bool, paper_layer: str | None = None
) -> LayerChoice:
    """The row that localises best (the rule is in the module docstring).

    Args:
        rows: candidates from :func:`compare_layers`.
        has_parts: whether the rows have part-based scores.
        paper_layer: the model's default layer, quoted in the reason for comparison.
    """
    if not rows:
        raise InputError("no candidate layers to choose from")
    if has_parts:
        criteria = [
            [r.pointing_game - r.chance for r in rows],
            [r.energy_in_part for r in rows],
            [r.spearman_cam_effect for r in rows],
        ]
    else:
        criteria = [[r.spearman_cam_effect for r in rows]]
    ranks = [_rank(c) for c in criteria]
    mean_rank = [sum(r[i] for r in ranks) / len(ranks) for i in range(len(rows))]
    raw = [mean_finite(torch.tensor([c[i] for c in criteria])) for i in range(len(rows))]
    raw = [-math.inf if math.isnan(v) else v for v in raw]
    best = min(range(len(rows)), key=lambda i: (mean_rank[i], -raw[i]))
    win = rows[best]
    several = len({r.method for r in rows}) > 1
    scores = {
        (f"{r.layer}/{r.method}" if several else r.layer): {
            **{k: getattr(r, k) for k in SCORE_KEYS},
            "mean_rank": mean_rank[i],
        }
        for i, r in enumerate(rows)
    }
    rule = (
        "best mean rank over pointing-minus-chance, energy and agreement"
        if has_parts
        else ("highest Spearman agreement with the effect maps")
    )
    reason = f"{_describe(win, has_parts)} ({rule})"
    # the paper's recipe is Grad-CAM at its layer; else the same method at the paper's layer
    paper = [r for r in rows if r.layer == paper_layer and r.method == "gradcam"] or [
        r for r in rows if r.layer == paper_layer and r.method == win.method
    ]
    if paper and paper[0] is not win:
        reason += f"; the paper's {_describe(paper[0], has_parts)}"
    elif paper:
        reason += "; this is the paper's layer"
    return LayerChoice(layer=win.layer, method=win.method, scores=scores, reason=reason + ".")


def choose_layer(
    model: nn.Module,
    images: Tensor,
    cond: Tensor | None = None,
    parts: Tensor | None = None,
    candidates: Sequence[str] | None = None,
    method: str | Sequence[str] = "gradcam",
    active_threshold: float = 0.01,
) -> LayerChoice:
    """Pick the layer whose maps localise best on these (validation) images.

    For each candidate (default: every encoder block and the fusion) the maps of the active
    units (mean KL above ``active_threshold`` nats; all units when none is) are scored
    against each unit's effect map and, with part masks, against the region the unit moves
    most (:func:`latentcam.explain.metrics.best_region` of the effect table); the rule is
    in the module docstring.

    Args:
        model: a latentcam model (encode, decode).
        images: (N, 3, H, W) float in [0, 1], held-out images (keep N small: 16-32).
        cond: (N, A) CVAE condition or None.
        parts: (N, H, W) part ids or None.
        candidates: layer names and/or :data:`FUSION`.
        method: one CAM method, or several (then the choice is over (layer, method) pairs).

    Returns:
        :class:`LayerChoice`.
    """
    names = parse_layers(model, list(candidates)).layers if candidates else auto_candidates(model)
    methods = [method] if isinstance(method, str) else list(method)
    with torch.no_grad():
        mu, logvar = model.encode(images, cond)  # type: ignore[operator]
    active = torch.nonzero(M.active_units(kl_per_unit(mu, logvar).cpu(), active_threshold))
    units = active.flatten().tolist() or list(range(mu.shape[1]))
    effects = effect_maps(model, mu, units=units, cond=cond).cpu()  # type: ignore[arg-type]
    regions = ["none"] * len(units)
    if parts is not None:
        regions = M.best_region(M.unit_part_table(effects, parts.cpu())).names
    bank = CamBank(model, images, cond)
    rows = compare_layers(bank, names, methods, units, effects, parts, regions)
    choice = pick_best(rows, parts is not None, getattr(model, "explain_layer", None))
    log.info("layer auto: %s", choice.reason)
    return choice


__all__ = [
    "ALL",
    "AUTO",
    "DEFAULT",
    "FUSE_HOW",
    "FUSION",
    "CamBank",
    "ComparisonRow",
    "LayerChoice",
    "LayerRequest",
    "Reference",
    "auto_candidates",
    "choose_layer",
    "compare_layers",
    "encoder_blocks",
    "fuse_maps",
    "fused_cams",
    "fusion_layers",
    "localisation_scores",
    "mean_finite",
    "parse_layers",
    "pick_best",
    "reference_of",
]
