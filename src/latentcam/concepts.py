"""Concepts of a trained run: find latent directions on its data, and score their heatmaps
against the face parts where the concepts show.

The single unit that best predicts an attribute is a weak handle on it; a linear probe on
mu is a much better one, and its weight vector w is a direction whose score mu . w can be
explained like a unit (:mod:`latentcam.explain.directions`). This module does that for a
run:

- :func:`find_directions`: encode the run's training split (and validation split), then
  find attribute, factor, PCA, SeFa or decoder-Jacobian directions, or read the user's
  (a vector file, two folders of images "with" and "without" a concept).
- :func:`resolve_directions`: what ``--directions`` means on the command line (a file, or a
  finder's name such as ``attributes``), with ``--names`` selecting.
- :func:`score_directions`: for each direction that has parts, at every layer x method,
  the energy of its heatmap in the part, the pointing game with three chance levels (the
  part's area share, a random cell of that layer's grid, random directions), the pointing
  game of its effect map |decode(mu + 3 m) - decode(mu - 3 m)| (m = one data standard
  deviation of the score mu . w, along the direction's activation pattern) and the Spearman agreement between the two over the cells of the layer's grid (the
  effect map average-pooled to it; on the first :data:`SPEARMAN_FACES` scored faces). A
  direction is scored on the faces that show its concept (:func:`concept_presence`), as the
  pointing game is played on the images that contain the class (Zhang et al. 2016): faces
  where the part is empty, or where the concept is absent, are left out and counted.
- :func:`directions_report`: the ``directions`` section of ``latentcam evaluate``: every
  attribute (and synthetic factor) direction scored beside its best single unit, scored the
  same way, and the unsupervised directions with what they correlate with.
- :func:`directions_run`: ``latentcam directions``: directions.npz, directions.json and a
  ranking figure.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from latentcam.checkpoint import LoadedRun, load_run
from latentcam.data.classes import ATTRIBUTE_NAMES
from latentcam.data.dataset import FaceDataset, load_face_data
from latentcam.errors import DataError, InputError
from latentcam.explain import metrics as M
from latentcam.explain.directions import (
    ATTRIBUTE_PARTS,
    DirectionSet,
    attribute_directions,
    best_units,
    correlations,
    factor_directions,
    first_linear_weight,
    jacobian_directions,
    mean_difference,
    oriented,
    part_ids,
    pca_directions,
    pearson_matrix,
    random_directions,
    read_vectors,
    sefa_directions,
    unit_direction,
)
from latentcam.explain.disentangle import auroc_matrix
from latentcam.explain.layers import (
    FUSION,
    CamBank,
    ComparisonRow,
    encoder_blocks,
    mean_finite,
    pick_best,
)
from latentcam.explain.traversal import effect_maps
from latentcam.figures import save_figure
from latentcam.io import ensure_dir, write_json
from latentcam.plots import direction_ranking
from latentcam.runs import Latents, check_run_output, encode_run_data
from latentcam.verdicts import Verdict, verdict

log = logging.getLogger(__name__)

Tensor = torch.Tensor

#: Finder names accepted by ``latentcam directions --kind`` and ``--directions``.
FINDERS = ("attributes", "factors", "pca", "sefa", "jacobian")
#: CAM methods the directions are scored with by default (Grad-CAM is the paper's; LayerCAM
#: and HiResCAM keep the gradient's spatial layout, which the high-resolution blocks need).
DIRECTION_METHODS = ("gradcam", "layercam", "hirescam")
#: The scores of one (direction, layer, method), in metrics.json order.
SCORE_KEYS = (
    "energy_in_part",
    "pointing_game",
    "chance",
    "cell_chance",
    "random_pointing",
    "random_energy",
    "effect_pointing",
    "spearman_cam_effect",
)
#: Held-out probe quality below which the model is said not to encode a concept linearly
#: (AUROC for an attribute, R² for a factor): no heatmap of its direction can show it, and
#: the entry's ``encoded`` is False. AUROC 0.6 is a weak but real signal; R² 0.1 is a
#: correlation of about 0.3.
ENCODED_AUROC = 0.6
ENCODED_R2 = 0.1
#: Random directions whose maps give the null baseline of every score (``random_*``).
RANDOM_DIRECTIONS = 8
#: Faces per direction whose heatmap and effect map are compared by Spearman over pixels (the
#: ranking is the costly step; the other scores use every face).
SPEARMAN_FACES = 32
#: Unsupervised directions found per finder by ``evaluate``.
UNSUPERVISED_K = 5
#: Direction kinds found without labels (listed, not scored against parts).
UNSUPERVISED_KINDS = ("pca", "sefa", "jacobian")
#: A direction's finder scores copied into its metrics.json entry.
SUMMARY_KEYS = (
    "auroc",
    "accuracy",
    "balanced_accuracy",
    "n_pos",
    "n_pos_val",
    "r2",
    "corr",
    "n_with",
    "n_without",
)


# ----------------------------------------------------------------------------- finding


def _validation_latents(
    loaded: LoadedRun, data: str | Path | None, max_images: int, progress: bool
) -> Latents:
    """Latents of the validation split, or of the test split when there is no validation."""
    try:
        return encode_run_data(loaded, data, "val", max_images, progress=progress)
    except DataError:
        return encode_run_data(loaded, data, "test", max_images, progress=progress)


def _folder_latents(loaded: LoadedRun, folder: str | Path, progress: bool) -> Tensor:
    """mu of every image of a plain folder, at the run's image size."""

    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"no image folder at {path}")
    cfg = loaded.config
    face_data = load_face_data(path, cfg.model.image_size, progress=progress)
    dataset = FaceDataset(face_data, split="all")
    if len(dataset) == 0:
        raise InputError(f"the folder {path} holds no image")
    if int(getattr(loaded.model, "cond_dim", 0) or 0) > 0:
        raise InputError(
            "concept folders need an unconditional model: a CVAE's mu depends on the attributes"
        )
    model = loaded.model
    device = next(model.parameters()).device
    mus = []
    with torch.no_grad():
        for start in range(0, len(dataset), 256):
            batch = dataset.batch(np.arange(start, min(start + 256, len(dataset))))
            mus.append(model.encode(batch["image"].to(device), None)[0].float().cpu())
    return torch.cat(mus)


def find_directions(
    run: str | Path | LoadedRun,
    data: str | Path | None = None,
    kinds: Sequence[str] = ("attributes",),
    names: Sequence[str] | None = None,
    k: int = UNSUPERVISED_K,
    max_images: int = 4000,
    parts: Mapping[str, Sequence[str]] | None = None,
    with_images: str | Path | None = None,
    without_images: str | Path | None = None,
    concept: str = "concept",
    vectors: str | Path | None = None,
    progress: bool = True,
) -> DirectionSet:
    """Find (or read) latent directions of a run on its data.

    Args:
        run: a run folder, ``.ckpt`` or loaded run.
        data: dataset path (default: the run's own data).
        kinds: finders among :data:`FINDERS`, or ``"all"`` (every finder the data allows).
        names: attribute / factor names to keep (an unknown one, or one with too few
            positives, is an InputError); None = every one with enough positives.
        k: directions per unsupervised finder.
        max_images: training images encoded for the finders (and as many validation images
            for their scores).
        parts: attribute -> part names (default :data:`ATTRIBUTE_PARTS`).
        with_images, without_images: two image folders: the mean-difference direction
            ``concept`` (TCAV).
        concept: the name of that direction.
        vectors: a file of user directions (:func:`latentcam.explain.directions.read_vectors`).

    Returns:
        the directions, in finder order; the unsupervised ones oriented towards the attribute
        (or factor) they correlate with most, which is recorded in their scores.
    """
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    wanted = list(FINDERS) if "all" in kinds else list(dict.fromkeys(kinds))
    bad = [w for w in wanted if w not in FINDERS]
    if bad:
        raise InputError(
            f"unknown direction finder '{bad[0]}'; choose from: {', '.join(FINDERS)}, all"
        )
    if (with_images is None) != (without_images is None):
        raise InputError("give both --with and --without image folders for a concept direction")
    K = int(loaded.model.latent_dim)
    found = DirectionSet([], K, {"run": str(loaded.run_dir or loaded.checkpoint_path)})
    if vectors is not None:
        found = found.extend(read_vectors(vectors, K))
    if with_images is not None and without_images is not None:
        mu_with = _folder_latents(loaded, with_images, progress)
        mu_without = _folder_latents(loaded, without_images, progress)
        found = found.extend(DirectionSet([mean_difference(mu_with, mu_without, concept)], K))
    if not wanted:
        return found
    train = encode_run_data(loaded, data, "train", max_images, progress=progress)
    val = _validation_latents(loaded, data, max_images, progress)
    found.meta.update(train_images=int(train.mu.shape[0]), val_images=int(val.mu.shape[0]))
    if data is not None:
        found.meta["data"] = str(data)
    if "attributes" in wanted and (train.attrs is None or val.attrs is None):
        if "all" not in kinds:
            raise InputError(
                "attribute directions need attribute labels; this data has none (use a dataset "
                "with an attribute file: CelebA, CelebAMask-HQ, synth), or --kind pca/sefa/jacobian"
            )
        wanted.remove("attributes")
    if "factors" in wanted and (train.factors is None or val.factors is None):
        if "all" not in kinds:
            raise InputError(
                "factor directions need known factors: only the synthetic faces have them"
            )
        wanted.remove("factors")
    if "attributes" in wanted:
        assert train.attrs is not None and val.attrs is not None
        found_attrs = attribute_directions(
            train.mu,
            train.attrs,
            val.mu,
            val.attrs,
            ATTRIBUTE_NAMES,
            parts=ATTRIBUTE_PARTS if parts is None else parts,
            required=[n for n in (names or ()) if n in ATTRIBUTE_NAMES],
        )
        found = found.extend(with_best_units(found_attrs, train, val))
    if "factors" in wanted:
        assert train.factors is not None and val.factors is not None
        found = found.extend(
            with_best_units(
                factor_directions(train.mu, train.factors, val.mu, val.factors, train.factor_names),
                train,
                val,
            )
        )
    unsupervised = DirectionSet([], K)
    if "pca" in wanted:
        unsupervised = unsupervised.extend(pca_directions(train.mu, k))
    if "sefa" in wanted:
        weight = first_linear_weight(loaded.model, K)
        if weight is None:
            if "all" not in kinds:
                raise InputError(
                    "this model's decoder does not start with a linear layer on z, so SeFa does "
                    "not apply; use --kind jacobian (the decoder Jacobian's directions)"
                )
        else:
            unsupervised = unsupervised.extend(sefa_directions(weight, k, mu=train.mu))
    if "jacobian" in wanted:
        device = next(loaded.model.parameters()).device
        sample = train.mu[: min(32, train.mu.shape[0])].to(device)
        cond = None
        if int(getattr(loaded.model, "cond_dim", 0) or 0) > 0 and train.attrs is not None:
            cond = train.attrs[: sample.shape[0]].to(device)
        unsupervised = unsupervised.extend(jacobian_directions(loaded.model, sample, cond, k))
    if len(unsupervised):
        found = found.extend(_annotate(unsupervised, train))
    if names is not None:
        skipped = found.skipped
        found = found.select(list(names))
        found.skipped = {n: w for n, w in skipped.items() if n in names}
    return found


def with_best_units(found: DirectionSet, train: Latents, val: Latents) -> DirectionSet:
    """Attribute and factor directions with their best single unit recorded in ``scores``.

    For an attribute: the unit with the highest training-split AUROC in its better sign (the
    rule of ``ranking.attribute_auroc``), and that signed unit's AUROC on the validation
    split (``best_unit_auroc``). For a factor: the unit with the highest |Pearson r| with
    the factor on the training split, signed like r (``best_unit_corr`` on validation).
    ``best_unit_scale`` is the unit's standard deviation over the training split.
    """
    spread = train.mu.double().std(0).clamp_min(1e-8)
    attrs = [d for d in found if d.kind == "attribute" and d.name in ATTRIBUTE_NAMES]
    if attrs and train.attrs is not None and val.attrs is not None:
        picked = [ATTRIBUTE_NAMES.index(d.name) for d in attrs]
        units, signs, _ = best_units(train.mu, train.attrs[:, picked])
        values = val.mu[:, units].double() * torch.tensor(signs, dtype=torch.float64)
        held = auroc_matrix(values, val.attrs[:, picked].double() > 0).diagonal()
        for j, d in enumerate(attrs):
            d.scores.update(
                best_unit=units[j],
                best_unit_sign=signs[j],
                best_unit_auroc=float(held[j]),
                best_unit_scale=float(spread[units[j]]),
            )
    factors = [d for d in found if d.kind == "factor" and d.name in train.factor_names]
    if factors and train.factors is not None and val.factors is not None:
        corr = pearson_matrix(train.mu, train.factors)  # (K, F)
        corr_val = pearson_matrix(val.mu, val.factors)
        for d in factors:
            f = train.factor_names.index(d.name)
            unit = int(corr[:, f].abs().argmax())
            sign = 1 if float(corr[unit, f]) >= 0 else -1
            d.scores.update(
                best_unit=unit,
                best_unit_sign=sign,
                best_unit_corr=float(sign * corr_val[unit, f]),
                best_unit_scale=float(spread[unit]),
            )
    return found


def _annotate(directions: DirectionSet, train: Latents) -> DirectionSet:
    """Orient unsupervised directions towards their top correlate and record the top three."""
    labels, label_names = _labels(train)
    if labels is None:
        return directions
    directions = oriented(directions, correlations(directions, train.mu, labels, label_names))
    top = correlations(directions, train.mu, labels, label_names)
    annotated = []
    for d in directions:
        scores = {**d.scores, "top_correlates": [[n, r] for n, r in top[d.name]]}
        annotated.append(replace(d, scores=scores))
    return DirectionSet(annotated, directions.latent_dim, dict(directions.meta))


def _labels(latents: Latents) -> tuple[Tensor | None, list[str]]:
    """Attributes that vary, and factors, as one (N, L) matrix with their names."""
    columns, names = [], []
    if latents.attrs is not None:
        rate = latents.attrs.mean(0)
        for a, name in enumerate(ATTRIBUTE_NAMES):
            if 0.0 < float(rate[a]) < 1.0:
                columns.append(latents.attrs[:, a])
                names.append(name)
    if latents.factors is not None:
        for f, name in enumerate(latents.factor_names):
            columns.append(latents.factors[:, f])
            names.append(f"factor:{name}")
    if not columns:
        return None, []
    return torch.stack(columns, dim=1), names


def resolve_directions(
    spec: str,
    run: str | Path | LoadedRun,
    data: str | Path | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> DirectionSet:
    """The directions that ``--directions SPEC [--names ...]`` asks for.

    ``SPEC`` is a file (a ``directions.npz`` written by ``latentcam directions``, or a vector
    file, :func:`latentcam.explain.directions.read_vectors`) or a finder name of
    :data:`FINDERS` (``attributes``, ``factors``, ``pca``, ``sefa``, ``jacobian``; fit now on
    the run's training split), or several joined by commas.

    Raises:
        InputError: an unknown file or finder, an unknown name, a direction of the wrong width.
    """
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    K = int(loaded.model.latent_dim)
    words = [w.strip() for w in str(spec).split(",") if w.strip()]
    if not words:
        raise InputError("--directions is empty; give a directions file or 'attributes'")
    finders = [w for w in words if w in FINDERS or w == "all"]
    files = [w for w in words if w not in finders]
    found = DirectionSet([], K)
    for path in files:
        if not Path(path).exists():
            raise InputError(
                f"--directions '{path}' is neither a file nor a finder ({', '.join(FINDERS)})"
            )
        found = found.extend(read_vectors(path, K))
    if finders:
        finder_names = None if files else names
        found = found.extend(
            find_directions(loaded, data, finders, names=finder_names, progress=progress)
        )
    if names is not None:
        found = found.select(list(names))
    if not len(found):
        raise InputError(f"--directions {spec} gave no direction (see the log for why)")
    return found


# ----------------------------------------------------------------------------- scoring


@dataclass
class DirectionScore:
    """How well one direction's heatmaps land on its part.

    Attributes:
        name: the direction's name.
        parts: the part names scored against.
        faces: faces scored (the part is there and the concept shows).
        faces_without_part: faces left out because the part is empty there.
        faces_without_concept: faces left out because the concept is absent there (the
            attribute's label is 0, the factor lies in its lower half).
        layers: layer -> method -> {score name: value} (:data:`SCORE_KEYS`).
        best_layer, best_method: the pair that localises best by the rule of ``--layer auto``
            (:func:`latentcam.explain.layers.pick_best`: best mean rank over pointing game
            minus chance, energy in part and agreement with the effect map), the chance being
            the strongest baseline (area share, random cell, random directions).
    """

    name: str
    parts: tuple[str, ...]
    faces: int
    faces_without_part: int
    faces_without_concept: int = 0
    layers: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    best_layer: str = ""
    best_method: str = ""

    def at(self, layer: str, method: str) -> dict[str, float]:
        return self.layers.get(layer, {}).get(method, {k: float("nan") for k in SCORE_KEYS})

    @property
    def best(self) -> dict[str, float]:
        return self.at(self.best_layer, self.best_method)


def cell_chance(mask: Tensor, size: Sequence[int]) -> Tensor:
    """Chance of the pointing game for a map of ``size`` (h, w) cells: the share of the
    layer's cells whose centre pixel lies in the part, per image.

    A map at h x w resolution, upsampled, peaks near the centre of one of its cells: a random
    cell hits the part with this probability (the area share at image resolution).

    Args:
        mask: bool (N, H, W). size: (h, w).

    Returns:
        float (N,).
    """
    N, H, W = mask.shape
    h, w = int(size[0]), int(size[1])
    rows = ((torch.arange(h) + 0.5) * H / h).long().clamp(max=H - 1)
    cols = ((torch.arange(w) + 0.5) * W / w).long().clamp(max=W - 1)
    return mask[:, rows][:, :, cols].float().mean(dim=(1, 2))


def concept_presence(
    directions: DirectionSet,
    attrs: Tensor | None = None,
    factors: Tensor | None = None,
    factor_names: Sequence[str] = (),
) -> dict[str, Tensor]:
    """The faces on which each direction's concept shows, by name: bool (N,).

    An attribute direction's concept shows where the face's label is 1; a factor direction's
    where the factor lies above its median over these faces (its scores rise with the factor:
    the upper half is where the heatmap has positive evidence to show). A direction named
    ``NAME:unit_k`` (the best single unit for NAME) shares NAME's faces, so the two are scored
    on the same faces. Directions with neither label (PCA, a user's vector) are absent from
    the result: every face counts for them.

    Args:
        attrs: float (N, 40) CelebA attributes in {0, 1}, or None.
        factors: float (N, F) known factors (synthetic faces), named by ``factor_names``.
    """
    present: dict[str, Tensor] = {}
    for d in directions:
        concept = d.name.split(":unit_")[0]
        if attrs is not None and concept in ATTRIBUTE_NAMES and d.kind != "factor":
            present[d.name] = attrs[:, ATTRIBUTE_NAMES.index(concept)].cpu() > 0.5
        elif factors is not None and concept in factor_names:
            column = factors[:, list(factor_names).index(concept)].cpu().float()
            present[d.name] = column > column.median()
    return present


def _pick(maps: Tensor, rows: Tensor, columns: Tensor) -> Tensor:
    """maps[rows][:, columns] for (N, T, ...) maps, columns first (copies only what is kept)."""
    return maps.index_select(1, columns).index_select(0, rows)


def score_directions(
    model: torch.nn.Module,
    images: Tensor,
    cond: Tensor | None,
    parts: Tensor,
    directions: DirectionSet,
    layers: Sequence[str] | None = None,
    methods: Sequence[str] = DIRECTION_METHODS,
    delta: float = 3.0,
    progress: bool = False,
    random: int = RANDOM_DIRECTIONS,
    present: Mapping[str, Tensor] | None = None,
) -> list[DirectionScore]:
    """Score every direction that has parts (see the module docstring for the scores).

    Besides the two chance levels, ``random`` seeded random directions
    (:func:`latentcam.explain.directions.random_directions`) are scored against every part
    at every layer and method: ``random_pointing`` and ``random_energy`` are their means, the
    baseline of a map that knows the face but not the concept (small salient parts such as
    the mouth beat the area share easily).

    Args:
        model: a latentcam model.
        images: (N, 3, H, W) in [0, 1], held-out images; cond: (N, A) or None.
        parts: int64 (N, H, W) CelebAMask-HQ part ids.
        directions: the T directions (those without parts are skipped).
        layers: real layer names and/or ``"fusion"`` (default: every encoder block).
        methods: CAM methods.
        delta: effect-map step in units of each direction's ``scale``.
        random: how many random directions give the ``random_*`` baseline (0 = none: NaN).
        present: direction name -> bool (N,): the faces where its concept shows
            (:func:`concept_presence`); only those are scored. A direction not named is
            scored on every face where its part is there.

    Returns:
        one :class:`DirectionScore` per direction with parts, in order.
    """
    scored = [d for d in directions if d.parts]
    if not scored:
        return []
    names = list(layers) if layers else encoder_blocks(model)
    subset = DirectionSet(scored, directions.latent_dim)
    parts = parts.cpu().long()
    with torch.no_grad():
        mu, _ = model.encode(images, cond)  # type: ignore[operator]
    rows = subset.displacements  # one data SD of each concept, along its pattern
    effects = effect_maps(model, mu, delta=delta, cond=cond, directions=rows).cpu()  # type: ignore[arg-type]
    null = random_directions(directions.latent_dim, random) if random > 0 else None
    targets = subset.targets + ([] if null is None else null.targets)
    bank = CamBank(model, images, cond, targets=targets)
    null_cols = torch.arange(len(scored), len(targets))
    results = [DirectionScore(d.name, d.parts, 0, 0) for d in scored]
    # directions that share a part set and faces share a mask: score them in one call
    everyone = torch.ones(parts.shape[0], dtype=torch.bool)
    shows = [
        everyone if present is None else present.get(d.name, everyone).cpu().bool() for d in scored
    ]
    groups: dict[tuple[tuple[int, ...], bytes], list[int]] = {}
    for t, d in enumerate(scored):
        groups.setdefault((part_ids(d.parts), shows[t].numpy().tobytes()), []).append(t)
    plan = []
    for (ids, _), cols in groups.items():
        mask = torch.isin(parts, torch.tensor(ids))  # (N, H, W)
        has_part = mask.flatten(1).any(1)  # (N,)
        concept = shows[cols[0]]
        keep = torch.nonzero(has_part & concept).flatten()  # faces scored
        for t in cols:
            results[t].faces = int(keep.numel())
            results[t].faces_without_part = int((~has_part).sum())
            results[t].faces_without_concept = int((has_part & ~concept).sum())
        if keep.numel() == 0:
            continue
        region = {"part": ids}
        columns = torch.tensor(cols)
        hits = M.region_scores(_pick(effects, keep, columns), parts[keep], "part", region).hits
        plan.append((cols, columns, mask[keep], keep, region, hits.mean(0).tolist()))
    pairs = [(layer, method) for layer in names for method in methods]
    for layer in names:
        if layer != FUSION:
            bank.prefetch(layer, list(methods))
    pooled: dict[tuple[int, int], Tensor] = {}  # effect maps at each map resolution
    for layer, method in tqdm(pairs, desc="directions", disable=not progress, leave=False):
        size = bank.map_size(layer)
        cams = bank.image_maps(layer, method, list(range(len(targets))))  # (N, T + R, H, W)
        native = cams if layer == FUSION else bank.layer_maps(layer, method)  # (N, T, h, w)
        h, w = native.shape[-2:]
        if (h, w) not in pooled:
            pooled[(h, w)] = F.adaptive_avg_pool2d(effects, (h, w))
        for cols, columns, mask, keep, region, effect_hits in plan:
            sc = M.region_scores(_pick(cams, keep, columns), parts[keep], "part", region)
            ranked = keep[:SPEARMAN_FACES]
            cells_maps = _pick(native, ranked, columns)  # (n, |cols|, h, w)
            a = M.average_ranks(cells_maps.flatten(2))
            b = M.average_ranks(_pick(pooled[(h, w)], ranked, columns).flatten(2))
            rho = M.pearson(a, b).float()  # (n, |cols|), NaN where a map is constant
            rho = torch.where(M.flat_maps(cells_maps), torch.zeros_like(rho), rho)
            chance = mean_finite(sc.chance)
            cells = chance if layer == FUSION else mean_finite(cell_chance(mask, size))
            null_hits = null_energy = float("nan")
            if null_cols.numel():
                nsc = M.region_scores(_pick(cams, keep, null_cols), parts[keep], "part", region)
                null_hits, null_energy = mean_finite(nsc.hits), mean_finite(nsc.energy)
            for j, t in enumerate(cols):
                results[t].layers.setdefault(layer, {})[method] = {
                    "energy_in_part": mean_finite(sc.energy[:, j]),
                    "pointing_game": mean_finite(sc.hits[:, j]),
                    "chance": chance,
                    "cell_chance": cells,
                    "random_pointing": null_hits,
                    "random_energy": null_energy,
                    "effect_pointing": float(effect_hits[j]),
                    "spearman_cam_effect": mean_finite(rho[:, j]),
                }
    for result in results:
        candidates = [
            ComparisonRow(
                layer=layer,
                method=method,
                map_size=[],
                energy_in_part=scores["energy_in_part"],
                pointing_game=scores["pointing_game"],
                chance=strongest_baseline(scores),
                spearman_cam_effect=scores["spearman_cam_effect"],
            )
            for layer, by_method in result.layers.items()
            for method, scores in by_method.items()
        ]
        if candidates:
            choice = pick_best(candidates, has_parts=True)
            result.best_layer, result.best_method = choice.layer, choice.method
    return results


# ----------------------------------------------------------------------------- evaluate


def strongest_baseline(scores: Mapping[str, float]) -> float:
    """The strongest pointing-game baseline: area share, random cell or random directions."""
    values = [scores.get(k) for k in ("chance", "cell_chance", "random_pointing")]
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return max(finite) if finite else float("nan")


def encoded(scores: Mapping[str, Any]) -> bool | None:
    """Whether a supervised direction's held-out probe says the model encodes its concept
    (AUROC >= :data:`ENCODED_AUROC`, or R² >= :data:`ENCODED_R2` for a factor); None when
    neither was measured."""
    if scores.get("auroc") is not None and not math.isnan(float(scores["auroc"])):
        return float(scores["auroc"]) >= ENCODED_AUROC
    if scores.get("r2") is not None and not math.isnan(float(scores["r2"])):
        return float(scores["r2"]) >= ENCODED_R2
    return None


def pointing_verdict(scores: Mapping[str, float]) -> Verdict:
    """A plain reading of a pointing game against its strongest baseline
    (:func:`latentcam.verdicts.verdict`); ``scores`` holds ``pointing_game`` and the
    baselines of :func:`strongest_baseline`."""
    return verdict(
        scores.get("pointing_game"),
        strongest_baseline(scores),
        at_chance="this heatmap does not show where the concept is",
    )


def _entry(score: DirectionScore, unit_score: DirectionScore | None) -> dict[str, Any]:
    best = {"layer": score.best_layer, "method": score.best_method, **score.best}
    best["verdict"] = pointing_verdict(score.best).text
    entry: dict[str, Any] = {
        "parts": list(score.parts),
        "faces": score.faces,
        "faces_without_part": score.faces_without_part,
        "faces_without_concept": score.faces_without_concept,
        "layers": score.layers,
        "best": best,
    }
    if unit_score is not None:
        at_best = unit_score.at(score.best_layer, score.best_method)
        entry["unit"] = {
            "layer": score.best_layer,
            "method": score.best_method,
            **at_best,
            "verdict": pointing_verdict(at_best).text,
            "own_best": {
                "layer": unit_score.best_layer,
                "method": unit_score.best_method,
                **unit_score.best,
            },
        }
    return entry


def directions_report(
    loaded: LoadedRun,
    images: Tensor,
    cond: Tensor | None,
    parts: Tensor | None,
    directions: DirectionSet,
    layers: Sequence[str] | None = None,
    methods: Sequence[str] = DIRECTION_METHODS,
    progress: bool = True,
    attrs: Tensor | None = None,
    factors: Tensor | None = None,
    factor_names: Sequence[str] = (),
    concept_faces: bool = True,
) -> dict[str, Any]:
    """The ``directions`` section of ``latentcam evaluate`` (keys in :mod:`latentcam.evaluate`).

    Every attribute and factor direction that has parts is scored against them on ``images``
    (:func:`score_directions`), beside its best single unit (``scores["best_unit"]`` and
    ``["best_unit_sign"]``, set by :func:`with_best_units`) scored the same way, as the
    direction e_k with the unit's own data spread. Unsupervised directions are listed with
    their explained variance and what they correlate with.

    Args:
        loaded: the run.
        images, cond, parts: the map images (N, 3, H, W), condition, part ids (N, H, W).
        directions: from :func:`find_directions`.
        layers, methods: what the heatmaps are scored at (default every encoder block).
        attrs, factors: the images' attributes (N, 40) and known factors (N, F) named by
            ``factor_names``, or None.
        concept_faces: score each direction (and its best unit) only on the faces that show
            its concept (:func:`concept_presence`); False scores every face with the part.
    """
    model = loaded.model
    K = int(model.latent_dim)
    section: dict[str, Any] = {
        **{k: v for k, v in directions.meta.items() if k in ("train_images", "val_images")},
        "map_images": int(images.shape[0]),
        "methods": list(methods),
        "layers": list(layers) if layers else encoder_blocks(model),
        "skipped": dict(directions.skipped),
    }
    supervised = [d for d in directions if d.kind not in UNSUPERVISED_KINDS]
    units = []
    for d in supervised:
        if "best_unit" in d.scores and d.parts:
            unit = unit_direction(
                int(d.scores["best_unit"]),
                K,
                int(d.scores["best_unit_sign"]),
                name=f"{d.name}:unit_{int(d.scores['best_unit'])}",
            )
            scale = float(d.scores.get("best_unit_scale", 1.0))
            units.append(replace(unit, parts=d.parts, scale=scale))
    scores_by_name: dict[str, DirectionScore] = {}
    if parts is not None and supervised:
        everything = DirectionSet([*supervised, *units], K)
        present = (
            concept_presence(everything, attrs, factors, factor_names) if concept_faces else None
        )
        section["faces_scored"] = "with the concept" if present else "every face with the part"
        for s in score_directions(
            model,
            images,
            cond,
            parts,
            everything,
            layers,
            methods,
            progress=progress,
            present=present,
        ):
            scores_by_name[s.name] = s
    attributes: dict[str, Any] = {}
    factor_entries: dict[str, Any] = {}
    for d in supervised:
        entry: dict[str, Any] = {
            "kind": d.kind,
            **{k: v for k, v in d.scores.items() if k in SUMMARY_KEYS},
            "parts": list(d.parts),
            "scale": d.scale,
            "source": d.source,
        }
        unit_name = None
        if "best_unit" in d.scores:
            unit_name = f"{d.name}:unit_{int(d.scores['best_unit'])}"
            entry["best_unit"] = {
                "unit": int(d.scores["best_unit"]),
                "sign": int(d.scores["best_unit_sign"]),
                **{
                    key: d.scores[f"best_unit_{key}"]
                    for key in ("auroc", "corr")
                    if f"best_unit_{key}" in d.scores
                },
            }
        entry["encoded"] = encoded(d.scores)
        if d.name in scores_by_name:
            unit_score = scores_by_name.get(unit_name) if unit_name else None
            entry.update(_entry(scores_by_name[d.name], unit_score))
        (factor_entries if d.kind == "factor" else attributes)[d.name] = entry
    section["attributes"] = attributes
    if factor_entries:
        section["factors"] = factor_entries
    section["unsupervised"] = {
        d.name: {
            "kind": d.kind,
            "explained_variance": d.scores.get("explained_variance"),
            "top_correlates": d.scores.get("top_correlates", []),
            "source": d.source,
        }
        for d in directions
        if d.kind in UNSUPERVISED_KINDS
    }
    return section


def evaluation_directions(
    loaded: LoadedRun,
    data: str | Path | None,
    has_attrs: bool,
    has_factors: bool,
    max_images: int = 4000,
    progress: bool = True,
) -> DirectionSet:
    """The directions ``evaluate`` scores by default: attribute directions (when the data has
    attributes), factor directions (known factors), PCA, and SeFa (or the decoder Jacobian's
    directions when the decoder does not start with a linear layer)."""
    kinds = ["attributes"] if has_attrs else []
    kinds += ["factors"] if has_factors else []
    kinds.append("pca")
    linear = first_linear_weight(loaded.model, int(loaded.model.latent_dim)) is not None
    kinds.append("sefa" if linear else "jacobian")
    return find_directions(loaded, data, kinds, max_images=max_images, progress=progress)


def directions_run(
    run: str | Path,
    out: str | Path,
    data: str | Path | None = None,
    kinds: Sequence[str] = ("attributes",),
    names: Sequence[str] | None = None,
    k: int = UNSUPERVISED_K,
    max_images: int = 4000,
    parts: Mapping[str, Sequence[str]] | None = None,
    with_images: str | Path | None = None,
    without_images: str | Path | None = None,
    concept: str = "concept",
    vectors: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """``latentcam directions``: find, score and save directions; returns the output folder.

    Writes ``out/directions.npz`` (:meth:`DirectionSet.save`), ``out/directions.json`` (every
    direction's kind, source, scale, parts and scores, and what was skipped and why) and
    ``out/ranking.png`` (held-out AUROC per attribute direction beside its best single unit;
    explained variance for unsupervised directions).
    """
    loaded = load_run(run)
    check_run_output(out, loaded, data, with_images, without_images, vectors)
    found = find_directions(
        loaded,
        data,
        kinds,
        names=names,
        k=k,
        max_images=max_images,
        parts=parts,
        with_images=with_images,
        without_images=without_images,
        concept=concept,
        vectors=vectors,
        progress=progress,
    )
    if not len(found):
        raise InputError(
            "no direction was found: "
            + ("; ".join(f"{n}: {w}" for n, w in found.skipped.items()) or "nothing asked")
        )
    folder = ensure_dir(out)
    found.save(folder / "directions.npz")
    write_json(folder / "directions.json", found.describe())
    save_figure(
        direction_ranking([{"name": d.name, "kind": d.kind, **d.scores} for d in found]),
        folder / "ranking.png",
    )
    log.info("wrote %d directions to %s", len(found), folder)
    return folder


__all__ = [
    "DIRECTION_METHODS",
    "FINDERS",
    "SCORE_KEYS",
    "DirectionScore",
    "cell_chance",
    "concept_presence",
    "directions_report",
    "directions_run",
    "find_directions",
    "resolve_directions",
    "score_directions",
]
