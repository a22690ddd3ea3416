"""Do latent directions localise where single units do not? The table of a trained run.

For a run trained on data with attributes and part masks (the synthetic faces, CelebAMask-HQ):
find the attribute (and, on synthetic faces, factor) directions on the training split
(:func:`latentcam.concepts.evaluation_directions`), score their heatmaps on ``--images``
validation faces at every encoder block x (gradcam, layercam, hirescam)
(:func:`latentcam.concepts.directions_report`), beside the best single unit for the same
attribute scored the same way, and print one markdown row per direction:

- the direction's held-out AUROC (R^2 for a factor) and the best unit's;
- the faces scored: those that show the concept (label 1; a factor in its upper half) and
  have the part, or with ``--all-faces`` every face with the part;
- the layer and method chosen by the ``auto`` rule, the pointing game there, the strongest of
  its three baselines (the part's area share, a random cell of the layer's grid, 8 random
  directions), the ratio to it, and the ratio to the area share alone;
- the energy in the part, and the best unit's pointing game and energy at the same layer and
  method (and at the unit's own best).

The last line is a JSON object with ``seconds_find``, ``seconds_score`` and, per direction,
``{pointing, baseline, energy, unit_pointing, unit_energy}``.

    python benchmarks/directions_table.py runs/vae64 --images 128
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from latentcam.concepts import directions_report, evaluation_directions, strongest_baseline
from latentcam.runs import open_run_data

HEADLINE = ("Smiling", "Eyeglasses", "Wearing_Hat", "Bangs")


def rows(section: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, entry) of every scored direction: the headline attributes first."""
    attributes = section.get("attributes", {})
    ordered = [n for n in HEADLINE if n in attributes] + sorted(
        n for n in attributes if n not in HEADLINE
    )
    out = [(n, attributes[n]) for n in ordered if "best" in attributes[n]]
    out += [(f"factor {n}", e) for n, e in section.get("factors", {}).items() if "best" in e]
    return out


def markdown(section: dict[str, Any]) -> list[str]:
    lines = [
        "| direction | AUROC dir / unit (factor: R² dir / r unit) | faces | best layer, method | pointing | baseline "
        "| ratio | x area share | energy | unit pointing | unit energy | unit's own best pointing |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, e in rows(section):
        best, unit = e["best"], e.get("unit", {})
        base = strongest_baseline(best)
        quality = e.get("auroc", e.get("r2"))
        unit_quality = e.get("best_unit", {}).get("auroc", e.get("best_unit", {}).get("corr"))
        own = unit.get("own_best", {}).get("pointing_game", float("nan"))
        lines.append(
            f"| {label} | {quality:.3f} / {unit_quality if unit_quality is None else f'{unit_quality:.3f}'} "
            f"| {e['faces']} | {best['layer'].replace('encoder.', '')} {best['method']} "
            f"| {best['pointing_game']:.3f} | {base:.3f} | {best['pointing_game'] / base:.1f}x "
            f"| {best['pointing_game'] / best['chance']:.1f}x | {best['energy_in_part']:.3f} | {unit.get('pointing_game', float('nan')):.3f} "
            f"| {unit.get('energy_in_part', float('nan')):.3f} | {own:.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder or .ckpt")
    parser.add_argument("--data", help="dataset (default: the run's own)")
    parser.add_argument("--images", type=int, default=128, help="validation faces scored")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--out", help="write the directions section as JSON here")
    parser.add_argument(
        "--all-faces",
        action="store_true",
        help="score every face with the part, not only the faces that show the concept",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = open_run_data(args.run, args.data, n=args.images, progress=False)
    if batch.parts is None or batch.attrs is None:
        parser.error("the data needs part masks and attributes (synth, CelebAMask-HQ)")
    start = time.perf_counter()
    found = evaluation_directions(
        batch.run, args.data, True, batch.factors is not None, progress=False
    )
    found_at = time.perf_counter()
    section = directions_report(
        batch.run,
        batch.images,
        batch.cond,
        batch.parts,
        found,
        progress=False,
        attrs=batch.attrs,
        factors=batch.factors,
        factor_names=batch.factor_names,
        concept_faces=not args.all_faces,
    )
    done = time.perf_counter()
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(section, fh, indent=1, default=float)
    print(f"{args.run}: {len(found)} directions, {batch.images.shape[0]} faces scored")
    print("\n".join(markdown(section)))
    summary: dict[str, Any] = {
        "seconds_find": round(found_at - start, 1),
        "seconds_score": round(done - found_at, 1),
    }
    for label, e in rows(section):
        best, unit = e["best"], e.get("unit", {})
        summary[label] = {
            "pointing": best["pointing_game"],
            "baseline": strongest_baseline(best),
            "energy": best["energy_in_part"],
            "unit_pointing": unit.get("pointing_game"),
            "unit_energy": unit.get("energy_in_part"),
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
