"""Do latent heatmaps land on the right face part? Layers x CAM methods x training options.

Issue #9. The paper explains a 64 px VAE with Grad-CAM at its last encoder conv (a 4x4 map).
On synthetic faces every factor moves one known part, so localisation can be measured. This
script trains each variant below on the same synthetic faces for the same wall-clock budget
(``--minutes``, ``train.max_minutes``; ``--jobs`` at a time, one thread each), then runs
:func:`latentcam.evaluate.evaluate` on ``--n`` validation images at every encoder block and
at a fusion of blocks, with Grad-CAM, LayerCAM and HiResCAM, and writes Markdown tables:

- per variant: validation PSNR (dB), steps trained, active units, MIG and DCI disentanglement
  (Chen et al. 2018; Eastwood & Williams 2018);
- per variant x layer x method, means over active units of: the pointing game (the map's
  peak lies in the part the unit's traversal moves most; Zhang et al. 2016) with its chance
  level, the energy of the map inside that part (Wang et al. 2020), and the agreement with
  the unit's effect map |decode(mu + 3 e_k) - decode(mu - 3 e_k)| (Spearman over pixels);
- the verdict: the paper's recipe (variant ``paper``, its last layer, Grad-CAM) against the
  best (variant, layer, method) that beats it on all three metrics with a PSNR drop under
  1 dB.

Variants (recipe ``vae64`` with K = 32 latent units, 4 strided conv blocks to 4x4):

- ``paper``: the paper's VAE (vector latent, linear head);
- ``attention``: + Liu et al. (2020)'s attention-disentanglement term, the soft IoU between
  the Grad-CAM maps (``|sum_c alpha_c A_c|``, as in their code) of random pairs of units at
  the last block (``train.attention_weight``);
- ``attention_relu``: the same term on ReLU maps (``train.attention_post=relu``);
- ``attention8``: the same term on the 8x8 block (``train.attention_layer=encoder.blocks.2``);
- ``spatial``: a spatial latent, 2 channels at the 4x4 map (32 units, each tied to a cell;
  ``model.bottleneck=spatial``);
- ``spatial4``: a spatial latent with 4 channels per cell (64 units);
- ``spatial_attention``: the spatial latent with the attention term.

    python benchmarks/localisation.py --minutes 6 --out benchmarks/localisation.md
    python benchmarks/localisation.py --quick          # seconds: the tiny recipe, 2 steps
    python benchmarks/localisation.py --reuse ...      # evaluate runs already trained

The last line printed is a JSON object with every number of the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from latentcam.evaluate import evaluate, jsonable
from latentcam.explain.layers import FUSION
from latentcam.io import atomic_write, ensure_dir
from latentcam.runs import open_run_data

#: name -> (what it is, config overrides on top of the base recipe).
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "paper": ("the paper's VAE: vector latent, linear head", []),
    "attention": (
        "+ attention-disentanglement loss at the last block (|maps|, Liu et al.'s code)",
        ["train.attention_weight=100"],
    ),
    "attention_relu": (
        "+ the same loss on ReLU maps (the Grad-CAM of the figures)",
        ["train.attention_weight=100", "train.attention_post=relu"],
    ),
    "attention8": (
        "+ attention-disentanglement loss at the 8x8 block",
        ["train.attention_weight=100", "train.attention_layer=encoder.blocks.2"],
    ),
    "spatial": (
        "spatial latent: 2 channels x 4x4 cells",
        ["model.bottleneck=spatial", "model.latent_dim=2"],
    ),
    "spatial4": (
        "spatial latent: 4 channels x 4x4 cells (64 units)",
        ["model.bottleneck=spatial", "model.latent_dim=4"],
    ),
    "spatial_attention": (
        "spatial latent + attention-disentanglement loss",
        ["model.bottleneck=spatial", "model.latent_dim=2", "train.attention_weight=100"],
    ),
}
METHODS = ("gradcam", "layercam", "hirescam")
#: The localisation metrics that must all improve on the paper's recipe. Each unit is scored
#: against the part its own traversal moves most, so the part (and the chance level, its area
#: share) differs between models: the pointing game also has to beat chance by more.
KEYS = ("pointing_game", "energy_in_part", "spearman_cam_effect", "pointing_over_chance")


def _train(name: str, overrides: list[str], args: argparse.Namespace) -> Path:
    """Train one variant in a subprocess (one thread); returns its run folder."""
    run = Path(args.work) / name
    if args.reuse and (run / "metrics.json").is_file():
        return run
    base = (
        ["--config", "tiny", "data.synth_n=64", "train.max_steps=2"]
        if args.quick
        else [
            "--config",
            "vae64",
            "model.latent_dim=32",
            f"data.synth_n={args.faces}",
            f"train.max_minutes={args.minutes}",
            "train.epochs=1000",
        ]
    )
    cmd = [sys.executable, "-m", "latentcam", "train", "--out", str(run), "--overwrite"]
    cmd += [*base, f"train.seed={args.seed}", *overrides]
    if args.quick:  # the tiny model has 3 blocks: its 8x8 block is encoder.blocks.1
        cmd = [c.replace("encoder.blocks.2", "encoder.blocks.1") for c in cmd]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    log = Path(args.work) / f"{name}.log"
    with open(log, "w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"training {name} failed (exit {done.returncode}); see {log}")
    return run


def _evaluate(name: str, run: Path, args: argparse.Namespace) -> dict[str, Any]:
    batch = open_run_data(run, None, n=args.n, split="val", progress=False)
    layers = [*batch.run.model.encoder_layers(), FUSION]
    result = evaluate(
        batch,
        layers=layers,
        methods=METHODS,
        max_map_images=args.map_images,
        sanity=False,
        progress=False,
    )
    metrics = json.loads((run / "metrics.json").read_text())  # the run's final validation
    dis = result.get("disentanglement", {})
    return {
        "variant": name,
        "what": VARIANTS[name][0],
        "steps": metrics["global_step"],
        "psnr": metrics.get("val/psnr"),
        "active": result["units"]["active"],
        "latent_dim": result["latent_dim"],
        "mig": dis.get("mig"),
        "dci": (dis.get("dci") or {}).get("disentanglement"),
        "paper_layer": result["localisation"].get("paper_layer", batch.run.model.explain_layer),
        "rows": [_with_lift(row) for row in result["localisation"]["comparison"]],
        "factors": _factor_summary(dis.get("factors", [])),
        "evaluate_seconds": result["seconds"],
    }


def _finite_mean(values: list[Any]) -> float | None:
    """Mean of the finite values (a map that is zero everywhere has no energy share)."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(kept) / len(kept) if kept else None


def _factor_summary(factors: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per "layer / method", means over the synthetic factors with a known part of their best
    unit's (highest mutual information) map scores against that true part."""
    out: dict[str, dict[str, float | None]] = {}
    scored = [f for f in factors if "per_layer" in f]
    if not scored:
        return out
    per_method = scored[0].get("per_method") or {"gradcam": scored[0]["per_layer"]}
    for method, layers in per_method.items():
        for layer in layers:
            rows = [
                (f.get("per_method") or {"gradcam": f["per_layer"]})[method][layer] for f in scored
            ]
            summary = {
                key: _finite_mean([r[key] for r in rows])
                for key in ("pointing_game", "chance", "energy_in_part", "lands_on_part")
            }
            summary["factors"] = len(rows)
            out[f"{layer} / {method}"] = summary
    return out


def _with_lift(row: dict[str, Any]) -> dict[str, Any]:
    """A comparison row with ``pointing_over_chance`` = pointing game - chance."""
    pg, chance = row.get("pointing_game"), row.get("chance")
    lift = None if pg is None or chance is None else pg - chance
    return {**row, "pointing_over_chance": lift}


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The paper's recipe against every (variant, layer, method) that beats it on all of
    :data:`KEYS` with a PSNR no more than 1 dB lower; the best by mean gain first."""
    paper = next(r for r in results if r["variant"] == "paper")
    ref = next(
        row
        for row in paper["rows"]
        if row["layer"] == paper["paper_layer"] and row["method"] == "gradcam"
    )
    winners = []
    for r in results:
        if r["psnr"] is None or paper["psnr"] is None or r["psnr"] < paper["psnr"] - 1.0:
            continue
        for row in r["rows"]:
            vals = [row.get(k) for k in KEYS]
            if any(v is None or ref.get(k) is None for v, k in zip(vals, KEYS, strict=True)):
                continue
            if all(row[k] > ref[k] for k in KEYS):
                gain = sum(row[k] - ref[k] for k in KEYS) / len(KEYS)
                winners.append({"variant": r["variant"], **row, "mean_gain": gain})
    winners.sort(key=lambda w: -w["mean_gain"])
    return {"paper_recipe": ref, "beats_on_all": winners}


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"# Localisation benchmark ({args.minutes} min per variant, {args.n} validation "
        f"images, maps on {args.map_images})",
        "",
        "| variant | what | steps | PSNR dB | active | MIG | DCI dis. |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['variant']} | {r['what']} | {r['steps']} | {_f(r['psnr'], 2)} | "
            f"{r['active']}/{r['latent_dim']} | {_f(r['mig'])} | {_f(r['dci'])} |"
        )
    lines += [
        "",
        "Means over active units; the part is the one each unit's traversal moves most. A map "
        "that is zero everywhere (dead maps: their share) is scored as a uniform map.",
        "",
        "| variant | layer | map | method | pointing (chance) | energy in part | "
        "Spearman vs effect | Spearman vs decoder | dead maps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for row in r["rows"]:
            size = row.get("map_size")
            size_text = "x".join(str(s) for s in size) if size else "-"
            paper = " (paper)" if row["layer"] == r["paper_layer"] else ""
            lines.append(
                f"| {r['variant']} | {row['layer']}{paper} | {size_text} | {row['method']} | "
                f"{_f(row.get('pointing_game'))} ({_f(row.get('chance'))}) | "
                f"{_f(row.get('energy_in_part'))} | {_f(row.get('spearman_cam_effect'))} | "
                f"{_f(row.get('spearman_cam_decoder'))} | {_f(row.get('dead_fraction'), 2)} |"
            )
    lines += [
        "",
        "Ground truth: each synthetic factor's best unit (highest mutual information), its "
        "Grad-CAM map against the factor's true part; means over factors.",
        "",
        "| variant | layer / method | factors | pointing (chance) | energy in part | "
        "share landing |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for layer, f in r["factors"].items():
            lines.append(
                f"| {r['variant']} | {layer} | {int(f['factors'])} | "
                f"{_f(f['pointing_game'])} ({_f(f['chance'])}) | {_f(f['energy_in_part'])} | "
                f"{_f(f['lands_on_part'], 2)} |"
            )
    v = verdict(results)
    ref = v["paper_recipe"]
    lines += [
        "",
        f"Paper's recipe (paper, {ref['layer']}, gradcam): pointing "
        f"{_f(ref.get('pointing_game'))}, energy {_f(ref.get('energy_in_part'))}, "
        f"Spearman {_f(ref.get('spearman_cam_effect'))}.",
    ]
    if v["beats_on_all"]:
        lines.append(
            "Beat it on pointing game, pointing game minus chance, energy in part and Spearman "
            "vs effect, PSNR within 1 dB (best first):"
        )
        lines.append("")
        for w in v["beats_on_all"][:8]:
            lines.append(
                f"- {w['variant']}, {w['layer']}, {w['method']}: pointing "
                f"{_f(w['pointing_game'])}, energy {_f(w['energy_in_part'])}, Spearman "
                f"{_f(w['spearman_cam_effect'])}"
            )
    else:
        lines.append("No variant/layer/method beats it on every metric.")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Trade-off plot: PSNR against the best pointing game of each variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentcam.figures import save_figure

    fig, axes = plt.subplots(1, len(KEYS), figsize=(4.2 * len(KEYS), 3.6))
    for ax, key in zip(axes, KEYS, strict=True):
        for r in results:
            scored = [row for row in r["rows"] if row.get(key) is not None]
            best = max(scored, key=lambda row: float(row[key])) if scored else None
            paper = next(
                (
                    row
                    for row in r["rows"]
                    if row["layer"] == r["paper_layer"] and row["method"] == "gradcam"
                ),
                None,
            )
            if best is None or r["psnr"] is None:
                continue
            ax.scatter(r["psnr"], best[key], label=f"{r['variant']} (best layer)")
            if paper is not None and paper.get(key) is not None:
                ax.scatter(r["psnr"], paper[key], marker="x", color="grey")
            ax.annotate(r["variant"], (r["psnr"], best[key]), fontsize=7)
        ax.set_xlabel("validation PSNR (dB)")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, loc="best")
    fig.suptitle("Localisation vs reconstruction (x: the paper's layer with Grad-CAM)")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=6.0, help="training budget per variant")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--jobs", type=int, default=2, help="variants trained at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training job")
    p.add_argument("--faces", type=int, default=4000, help="synthetic faces (90%% train)")
    p.add_argument("--n", type=int, default=256, help="validation images for probes/MIG/DCI")
    p.add_argument("--map-images", type=int, default=32, help="images for maps/effect maps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="localisation-runs", help="folder of the variants' runs")
    p.add_argument("--reuse", action="store_true", help="evaluate runs already trained")
    p.add_argument("--out", help="Markdown file to write (and a .png trade-off plot beside it)")
    p.add_argument("--quick", action="store_true", help="seconds: tiny recipe, 2 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.map_images = min(args.n, 32), min(args.map_images, 8)
    if "paper" not in args.variants:
        args.variants.insert(0, "paper")
    ensure_dir(Path(args.work), what="--work")
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = dict(
            zip(
                args.variants,
                pool.map(lambda v: _train(v, VARIANTS[v][1], args), args.variants),
                strict=True,
            )
        )
    trained = time.perf_counter() - t0
    results = [_evaluate(name, runs[name], args) for name in args.variants]
    text = markdown(results, args)
    print(text)
    if args.out:
        out = Path(args.out)
        with atomic_write(out) as fh:
            fh.write(text)
        plot(results, out.with_suffix(".png"))
    summary = {
        "results": results,
        "verdict": verdict(results),
        "train_seconds": round(trained, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(jsonable(summary)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
