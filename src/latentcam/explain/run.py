"""Explain a trained run: Grad-CAM of every latent unit on a batch of its images, to files.

:func:`explain_run` loads a run (or checkpoint) and ``n`` images of a split, computes the
maps of all K latent units in one pass (:func:`latentcam.explain.cam.latent_cams`, Liu et
al. 2020) and writes, under ``out``:

- ``maps.npz``: ``maps`` (N, K', h, w) float32 unnormalised (K' = the ``units`` asked for,
  else all K), ``mean_map`` (N, h, w) Liu's averaged map over all K units, ``mu`` (N, K),
  ``units`` (K',), ``images`` (N, 3, H, W) float32 in [0, 1], ``kl`` (K,) mean KL per unit
  over these images (nats), ``shown_units`` (the units drawn), ``layer`` and ``method``.
  ``maps`` / ``mean_map`` / ``layer`` are those of the FIRST explained layer (so readers of
  one-layer files keep working); every explained layer L also has ``maps__L`` and
  ``mean_map__L`` (the first one included), and ``layers`` lists them in order. The
  ``fusion`` layer's maps are at image size and in [0, 1] (normalised per map before fusing);
- ``grid.png``: rows = images (at most 16); columns = input, reconstruction (or predicted
  mask), averaged map, and one overlay per shown unit, with a colour bar; ``grid__L.png``
  the same for every further layer L;
- ``unit_{k:03d}.png`` per shown unit: the unit's map (first layer) over every explained image;
- ``layer_choice.json`` with ``layer="auto"``: the layer chosen, its method, the reason (one
  sentence with the numbers) and every candidate's scores.

The shown units are the ``units`` asked for, else the ``top`` units by KL (the units that
carry information), not 0..9. Heatmaps are min-max normalised per column over the images
(so that one unit's maps are comparable across images), then upsampled for display.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentcam.checkpoint import LoadedRun, load_run
from latentcam.errors import InputError
from latentcam.explain.cam import METHODS, mean_map, normalise, upsample
from latentcam.explain.directions import DirectionSet
from latentcam.explain.hooks import eval_mode
from latentcam.explain.layers import FUSION, CamBank, choose_layer, parse_layers
from latentcam.explain.metrics import RANKING_IMAGES, units_by_kl
from latentcam.explain.traversal import file_stem
from latentcam.figures import overlay, panel_grid, save_figure, to_uint8_hwc
from latentcam.generate import as_pictures
from latentcam.io import atomic_path, ensure_dir, write_json
from latentcam.models.base import Decoded, kl_per_unit
from latentcam.runs import RunData, check_run_output, open_run_data

log = logging.getLogger(__name__)

#: Most image rows drawn in grid.png and in each unit figure (the .npz holds all N).
MAX_ROWS = 16
#: Images explained per engine call (bounds memory when n is large).
BATCH = 64


def _overlays(images: torch.Tensor, heat: torch.Tensor) -> np.ndarray:
    """Heatmaps (N, h, w) in [0, 1], upsampled to the images (N, 3, H, W): uint8 (N, H, W, 3)."""

    height, width = images.shape[-2:]
    return overlay(images, upsample(heat, (height, width)).clamp(0, 1))


def _draw_grid(
    path: Path,
    images: torch.Tensor,
    pictures: torch.Tensor,
    average: torch.Tensor | None,
    unit_maps: torch.Tensor,
    titles: list[str],
    caption: str,
    output_title: str,
) -> None:
    """grid.png: columns input | reconstruction | averaged map (when given) | one overlay per
    unit or direction."""

    columns = [to_uint8_hwc(images), to_uint8_hwc(pictures)]
    heads = ["input", output_title]
    if average is not None:
        columns.append(_overlays(images, average))
        heads.append("mean map (all K)")
    columns += [_overlays(images, unit_maps[:, j]) for j in range(unit_maps.shape[1])]
    cells = [[column[i] for column in columns] for i in range(images.shape[0])]
    heads += titles
    fig = panel_grid(
        cells, heads, title=caption, cell_inches=1.2, colorbar_label="Grad-CAM, min-max per column"
    )
    save_figure(fig, path)


def _draw_unit(path: Path, images: torch.Tensor, heat: torch.Tensor, title: str) -> None:
    """unit_kkk.png: inputs above, this unit's overlays below, with a colour bar."""

    cells = [list(to_uint8_hwc(images)), list(_overlays(images, heat))]
    save_figure(panel_grid(cells, title=title, cell_inches=1.1), path)


def _safe(layer: str) -> str:
    """A layer name as part of a file name."""
    return layer.replace("/", "_")


def explain_run(
    run_or_ckpt: str | Path | LoadedRun,
    data: str | Path | None = None,
    out: str | Path = "explain",
    n: int = 16,
    units: Sequence[int] | None = None,
    method: str = "gradcam",
    layer: str | Sequence[str] | None = None,
    split: str = "val",
    top: int = 10,
    directions: DirectionSet | None = None,
) -> Path:
    """Explain ``n`` images of a run with Grad-CAM for every latent unit; write files to ``out``.

    With ``directions``, the targets are the directions' scores mu . w instead of the units
    (:mod:`latentcam.explain.directions`): ``maps.npz`` then holds ``maps`` (N, T, h, w),
    ``names`` (T,), ``vectors`` (T, K), ``scales`` (T,), ``mu``, ``images``, ``layer(s)``,
    ``method`` and ``targets="directions"`` (no ``mean_map``: an average over directions
    means nothing), ``grid.png`` has one column per direction and ``direction_NAME.png`` one
    figure per direction.

    Args:
        run_or_ckpt: a run folder, a ``.ckpt`` file, or a loaded run.
        data: dataset path (any layout, or ``"synth"``); default: the run's own dataset.
        out: output folder (created).
        n: number of images of ``split`` to explain.
        units: latent units to save and draw; default: all K saved, the ``top`` by KL drawn.
        method: gradcam | gradcam++ | xgradcam | hirescam | layercam.
        layer: layer spec (:func:`latentcam.explain.layers.parse_layers`): one or several
            encoder layer names, "default" (the paper's layer, ``model.explain_layer``, the
            default), "all", "fusion", "auto" (chosen on these images by
            :func:`latentcam.explain.layers.choose_layer`; the choice is written to
            ``layer_choice.json``).
        split: train | val | test | all.
        top: how many units to draw when ``units`` is not given.

    Returns:
        the output folder.

    Raises:
        CheckpointError, DataError, InputError: unreadable run or data, an unknown layer or
            method, a unit out of range.
    """
    if top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    if method not in METHODS:
        raise InputError(f"unknown CAM method '{method}'; choose one of: {', '.join(METHODS)}")
    loaded = run_or_ckpt if isinstance(run_or_ckpt, LoadedRun) else load_run(run_or_ckpt)
    check_run_output(out, loaded, data)
    batch = open_run_data(loaded, data, n=n, split=split)
    model = batch.run.model
    request = parse_layers(model, layer)
    count = batch.images.shape[0]
    log.info("explaining %d images of %s (%s split)", count, batch.data_path, split)
    folder = ensure_dir(out)
    layers = list(request.layers)
    if directions is not None:
        if request.auto:
            raise InputError("--layer auto chooses among unit maps; name the layers to explain")
        return _explain_directions(batch, folder, directions, list(request.layers), method)
    if request.auto:
        # the choice is made on at most 32 images (maps and effect maps of every unit)
        m = min(32, batch.images.shape[0])
        choice = choose_layer(
            model,
            batch.images[:m],
            None if batch.cond is None else batch.cond[:m],
            None if batch.parts is None else batch.parts[:m],
            method=method,
        )
        write_json(
            folder / "layer_choice.json",
            {
                "layer": choice.layer,
                "method": choice.method,
                "reason": choice.reason,
                "scores": choice.scores,
                "images": count,
                "split": split,
            },
        )
        log.info("layer auto chose %s: %s", choice.layer, choice.reason)
        if choice.layer not in layers:
            layers.append(choice.layer)
    outputs = []
    with eval_mode(model), torch.no_grad():
        for s in range(0, count, BATCH):
            c = None if batch.cond is None else batch.cond[s : s + BATCH]
            outputs.append(model(batch.images[s : s + BATCH], c))
    mu = torch.cat([o.mu for o in outputs]).float()  # (N, K)
    logvar = torch.cat([o.logvar for o in outputs]).float()
    first = outputs[0]
    num_units = mu.shape[1]
    kl = kl_per_unit(mu, logvar)  # (K,) mean over the explained images
    if units is not None:
        chosen = [int(k) for k in units]
        if not chosen:
            raise InputError("units is empty; give unit indices, or None for the top units by KL")
        bad = [k for k in chosen if not 0 <= k < num_units]
        if bad:
            raise InputError(
                f"unit {bad[0]} is out of range: the model has K={num_units} units "
                f"(0..{num_units - 1})"
            )
        saved_units, shown = chosen, chosen
    else:
        saved_units = list(range(num_units))
        ranked = (mu, logvar)
        if count < RANKING_IMAGES:  # rank on the images the report and the app rank on
            more = open_run_data(loaded, data, n=RANKING_IMAGES, split=split, progress=False)
            with eval_mode(model), torch.no_grad():
                ranked = model.encode(more.images, more.cond)
        shown = units_by_kl(*ranked)[: min(top, num_units)]
    # all K units at once (Liu's averaged map needs them all; it costs one pass per layer)
    bank = CamBank(model, batch.images, batch.cond)
    all_maps = {
        name: (
            bank.image_maps(FUSION, method, range(num_units))
            if name == FUSION
            else bank.layer_maps(name, method)
        )
        for name in layers
    }  # name -> (N, K, h, w); fused maps are at image size, in [0, 1]
    arrays: dict[str, Any] = {}
    for i, name in enumerate(layers):
        maps = all_maps[name][:, saved_units]
        average = mean_map(all_maps[name])  # (N, h, w), over all K units
        if i == 0:
            arrays["maps"] = maps.numpy().astype(np.float32)
            arrays["mean_map"] = average.numpy().astype(np.float32)
        arrays[f"maps__{name}"] = maps.numpy().astype(np.float32)
        arrays[f"mean_map__{name}"] = average.numpy().astype(np.float32)
    with atomic_path(folder / "maps.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            **arrays,
            mu=mu.cpu().numpy(),
            units=np.asarray(saved_units, dtype=np.int64),
            images=batch.images.float().cpu().numpy(),
            kl=kl.cpu().numpy().astype(np.float32),
            shown_units=np.asarray(shown, dtype=np.int64),
            layer=np.asarray(layers[0]),
            layers=np.asarray(layers),
            method=np.asarray(method),
        )

    rows = min(count, MAX_ROWS)
    images = batch.images[:rows].float().cpu()
    pictures = as_pictures(Decoded(first.recon, first.seg_logits))[:rows].cpu()
    output_title = "reconstruction" if first.recon is not None else "predicted mask"
    for i, name in enumerate(layers):
        unit_maps = normalise(all_maps[name][:rows, shown], per="unit")
        average = normalise(mean_map(all_maps[name])[:rows, None], per="unit")[:, 0]
        titles = [f"mu[{k}]\nKL {float(kl[k]):.3g}" for k in shown]
        caption = f"{method} at {name}; {batch.data_path} ({split})"
        grid = "grid.png" if i == 0 else f"grid__{_safe(name)}.png"
        _draw_grid(
            folder / grid, images, pictures, average, unit_maps, titles, caption, output_title
        )
        if i == 0:
            for j, k in enumerate(shown):
                title = f"unit {k} (mu[{k}], KL {float(kl[k]):.3g} nats): {method} at {name}"
                _draw_unit(folder / f"unit_{k:03d}.png", images, unit_maps[:, j], title)
    log.info("wrote %s (maps.npz, %d grids, %d unit figures)", folder, len(layers), len(shown))
    return folder


def _explain_directions(
    batch: RunData, folder: Path, directions: DirectionSet, layers: list[str], method: str
) -> Path:
    """The directions' maps at every layer, as files (see :func:`explain_run`)."""
    model = batch.run.model
    if directions.latent_dim != model.latent_dim:
        raise InputError(
            f"the directions are for K={directions.latent_dim} latent units; this model has "
            f"K={model.latent_dim}: find directions on this run"
        )
    with eval_mode(model), torch.no_grad():
        first = model(batch.images[:BATCH], None if batch.cond is None else batch.cond[:BATCH])
        mu = torch.cat(
            [
                model.encode(
                    batch.images[s : s + BATCH],
                    None if batch.cond is None else batch.cond[s : s + BATCH],
                )[0]
                for s in range(0, batch.images.shape[0], BATCH)
            ]
        )
    bank = CamBank(model, batch.images, batch.cond, targets=directions.targets)
    T = len(directions)
    all_maps = {
        name: bank.image_maps(FUSION, method, range(T))
        if name == FUSION
        else bank.layer_maps(name, method)
        for name in layers
    }
    arrays: dict[str, Any] = {}
    for i, name in enumerate(layers):
        if i == 0:
            arrays["maps"] = all_maps[name].numpy().astype(np.float32)
        arrays[f"maps__{name}"] = all_maps[name].numpy().astype(np.float32)
    with atomic_path(folder / "maps.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            **arrays,
            targets=np.asarray("directions"),
            names=np.asarray(directions.names, dtype=str),
            vectors=directions.vectors.numpy(),
            scales=directions.scales.numpy(),
            mu=mu.float().cpu().numpy(),
            images=batch.images.float().cpu().numpy(),
            layer=np.asarray(layers[0]),
            layers=np.asarray(layers),
            method=np.asarray(method),
        )
    rows = min(batch.images.shape[0], MAX_ROWS)
    images = batch.images[:rows].float().cpu()
    pictures = as_pictures(Decoded(first.recon, first.seg_logits))[:rows].cpu()
    output_title = "reconstruction" if first.recon is not None else "predicted mask"
    titles = [f"{d.name}\n({d.kind})" for d in directions]
    for i, name in enumerate(layers):
        maps = normalise(all_maps[name][:rows], per="unit")
        caption = f"{method} of directions at {name}; {batch.data_path} ({batch.split})"
        grid = "grid.png" if i == 0 else f"grid__{_safe(name)}.png"
        _draw_grid(folder / grid, images, pictures, None, maps, titles, caption, output_title)
        if i == 0:
            for j, d in enumerate(directions):
                title = f"direction {d.name} ({d.kind}): {method} of mu . w at {name}"
                _draw_unit(folder / f"direction_{file_stem(d.name)}.png", images, maps[:, j], title)
    log.info("wrote %s (maps.npz, %d grids, %d direction figures)", folder, len(layers), T)
    return folder
