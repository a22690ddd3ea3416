"""Do pythae's disentangling objectives beat our plain VAE? MIG, DCI, pointing and PSNR.

Issue #18, part 4. On the built-in synthetic faces (``data.path=synth``: every factor is
known and moves one known part), this script trains, for the SAME number of optimiser
steps at the SAME batch size, on the same training split:

- ``ours``: latentcam's VAE, ``latentcam train --config vae64 --data synth`` (Lightning;
  the plain ELBO: summed squared error + KL, Kingma & Welling 2014);
- ``pythae-<objective>`` for each ``--objectives``: a pythae model (Chadebec et al.,
  NeurIPS 2022) trained by pythae's own ``BaseTrainer`` with its own loss, on the very same
  architecture: its encoder and decoder are the parts of a latentcam VAE built from the
  same ModelConfig (:mod:`latentcam.models.pythae_nets`). Objectives: ``vae`` (pythae's
  ELBO, whose "mse" term is 0.5 x the summed squared error: the control that separates
  the trainer and the loss scale from the objective), ``betatc`` (beta-TC-VAE, Chen et al.
  NeurIPS 2018: the KL split into index-code MI, total correlation and dimension-wise KL,
  the TC weighted by ``--tc-beta``, minibatch stratified sampling) and ``betavae``
  (beta-VAE, Higgins et al. ICLR 2017, KL weight ``--kl-beta``).

Each pythae model is saved with pythae's ``model.save`` and brought in through latentcam's
import path, ``latentcam import --from python latentcam.models.pythae_nets:pythae_adapter
--kwargs ... --weights FOLDER/model.pt`` (pythae pickles custom networks, which ``--from
pythae`` refuses to unpickle; the factory rebuilds them and the weights come from
``model.pt``). Every run is then scored by ``latentcam evaluate`` on the same ``--val``
validation faces, and its PSNR is measured on them here (10 log10(1 / MSE), z = mu):

- MIG (Chen et al. 2018) and DCI disentanglement, completeness and informativeness (test
  accuracy; Eastwood & Williams 2018), ridge as evaluate's default;
- at the explained layer (the last encoder conv block, the paper's layer), with Grad-CAM:
  the pointing game of each active unit's map against the part its own traversal moves most,
  and of each factor's best unit (highest MI) against the factor's true part, each with its
  chance level (the part's area share).

Wall-clock seconds of training are measured in the same process (Lightning's fit time for
ours, which includes one validation pass per epoch; ``trainer.train()`` for pythae) beside
the steps, which are what is equalised. The last line printed is a JSON object with every
number of the table; ``--out`` writes the table as Markdown.

    OMP_NUM_THREADS=2 python benchmarks/pythae_objectives.py --out table.md   # 64 px, 300 steps
    OMP_NUM_THREADS=2 python benchmarks/pythae_objectives.py --size 32 --blocks 3 --steps 200
    python benchmarks/pythae_objectives.py --quick       # seconds: a few steps on a few faces

The second line is the run of docs/benchmarks/pythae_objectives.md (a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from latentcam.cli import main as cli
from latentcam.data.cache import resolve_cache_dir
from latentcam.data.dataset import FaceDataset, load_face_data, synthetic_source
from latentcam.io import atomic_write, ensure_dir
from latentcam.models.base import eval_mode
from latentcam.runs import open_run_data

#: The factory that rebuilds a pythae model with latentcam's networks (``latentcam import``).
FACTORY = "latentcam.models.pythae_nets:pythae_adapter"
#: The objectives this script can train, in table order.
OBJECTIVES = ("vae", "betatc", "betavae")
#: The columns of the table and the JSON, per model.
KEYS = (
    "psnr",
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "active",
    "pointing_units",
    "chance_units",
    "pointing_factors",
    "chance_factors",
)


class Trained(NamedTuple):
    """One trained model: its name, objective, run folder, steps and training seconds."""

    name: str
    objective: str
    run: Path
    steps: int
    seconds: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="optimiser steps of every model")
    p.add_argument("--batch", type=int, default=32, help="batch size of every model")
    p.add_argument("--latent-dim", type=int, default=16, help="K, latent units of every model")
    p.add_argument("--base-channels", type=int, default=8, help="model.base_channels")
    p.add_argument("--max-channels", type=int, default=64, help="model.max_channels")
    p.add_argument("--size", type=int, default=64, help="image side (model.image_size)")
    p.add_argument("--blocks", type=int, default=4, help="encoder conv blocks (model.num_layers)")
    p.add_argument("--faces", type=int, default=4000, help="synthetic faces (data.synth_n)")
    p.add_argument("--val", type=int, default=400, help="validation faces evaluated")
    p.add_argument("--map-images", type=int, default=16, help="evaluate --max-map-images")
    p.add_argument(
        "--objectives",
        default="betatc,vae",
        help=f"pythae objectives, comma-separated, from {', '.join(OBJECTIVES)}",
    )
    p.add_argument("--tc-beta", type=float, default=6.0, help="betatc: the TC weight (beta)")
    p.add_argument("--kl-beta", type=float, default=4.0, help="betavae: the KL weight (beta)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of every model")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of every model")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--work", default="runs/pythae_objectives", help="folder of the runs")
    p.add_argument("--out", help="write the Markdown table here")
    p.add_argument(
        "--reuse", action="store_true", help="score the runs already trained in --work again"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 160 faces, 8 steps of 16, 16 validation faces, a small net",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.faces, args.steps, args.batch, args.val, args.map_images = 160, 8, 16, 16, 4
        args.base_channels, args.max_channels, args.latent_dim = 4, 16, 4
    unknown = [o for o in args.objectives.split(",") if o not in OBJECTIVES]
    if unknown:
        p.error(f"unknown objective '{unknown[0]}'; choose from {', '.join(OBJECTIVES)}")
    return args


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ModelConfig of every model: recipe vae64's layout (strided conv blocks down to a
    4x4 map, linear head) at the asked image size, blocks, latent size and widths."""
    return {
        "image_size": args.size,
        "latent_dim": args.latent_dim,
        "num_layers": args.blocks,
        "base_channels": args.base_channels,
        "max_channels": args.max_channels,
        "head": "linear",
    }


def objective_params(objective: str, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of the objective's pythae config (reconstruction: pythae's "mse")."""
    if objective == "betatc":
        return {"alpha": 1.0, "beta": args.tc_beta, "gamma": 1.0, "use_mss": True}
    if objective == "betavae":
        return {"beta": args.kl_beta}
    return {}


def faces(args: argparse.Namespace) -> tuple[Path, torch.Tensor]:
    """The synthetic faces' folder (rendered on first use) and its training images
    (N, 3, S, S) float in [0, 1], split as every latentcam run splits it (seed ``--seed``)."""
    folder = synthetic_source(resolve_cache_dir(None), args.faces, args.size, 0, progress=False)
    data = load_face_data(folder, args.size, seed=args.seed, progress=False)
    train = FaceDataset(data, split="train")
    images = train.batch(np.arange(len(train)))["image"]
    return folder, images


def train_ours(args: argparse.Namespace, work: Path) -> Trained:
    """``latentcam train --config vae64 --data synth`` for ``--steps`` steps."""
    run = work / "ours"
    m = model_overrides(args)
    code = cli(
        [
            "train",
            "--config",
            "vae64",
            "--data",
            "synth",
            "--out",
            str(run),
            "--overwrite",
            "--no-progress",
            "--seed",
            str(args.seed),
            *(f"model.{k}={v}" for k, v in m.items()),
            f"data.synth_n={args.faces}",
            f"data.batch_size={args.batch}",
            f"train.lr={args.lr}",
            f"train.max_steps={args.steps}",
            "train.epochs=100000",
        ]
    )
    if code != 0:
        raise SystemExit(f"latentcam train failed (exit {code})")
    metrics = json.loads((run / "metrics.json").read_text())
    return Trained(
        "ours", "latentcam ELBO", run, int(metrics["global_step"]), metrics["train_seconds"]
    )


def train_pythae(
    objective: str, args: argparse.Namespace, images: torch.Tensor, folder: Path, work: Path
) -> Trained:
    """Train with pythae's BaseTrainer, save with pythae's save, ``latentcam import`` it."""
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from latentcam.models.pythae_nets import pythae_model

    N, B = images.shape[0], args.batch
    per_epoch = math.ceil(N / B)
    if args.steps % per_epoch:
        raise SystemExit(
            f"--steps {args.steps} is not a whole number of epochs of {per_epoch} steps "
            f"({N} training faces, batches of {B}); pythae's trainer counts epochs: give "
            f"--steps {max(1, round(args.steps / per_epoch)) * per_epoch}"
        )
    name = f"pythae-{objective}"
    params = objective_params(objective, args)
    kwargs = {"objective": objective, "model": model_overrides(args), "params": params}
    torch.manual_seed(args.seed)
    model = pythae_model(**kwargs)
    out = work / f"{name}-trainer"
    shutil.rmtree(out, ignore_errors=True)
    config = BaseTrainerConfig(
        output_dir=str(out),
        num_epochs=args.steps // per_epoch,
        learning_rate=args.lr,
        per_device_train_batch_size=B,
        keep_best_on_train=True,  # no eval set: keep the epoch of lowest training loss
        seed=args.seed,
        no_cuda=True,
    )
    trainer = BaseTrainer(model, BaseDataset(images, torch.zeros(N)), training_config=config)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    saved = Path(trainer.training_dir) / "final_model"  # pythae's model.save of its best model
    run = work / name
    shutil.rmtree(run, ignore_errors=True)
    code = cli(
        [
            "import",
            "--from",
            "python",
            FACTORY,
            "--kwargs",
            json.dumps(kwargs),
            "--weights",
            str(saved / "model.pt"),
            "--out",
            str(run),
            "--data",
            str(folder),
        ]
    )
    if code != 0:
        raise SystemExit(f"latentcam import of {saved} failed (exit {code})")
    return Trained(name, objective, run, args.steps, seconds)


def psnr(run: Path, folder: Path, n: int) -> float:
    """Validation PSNR (dB) of z = mu reconstructions over the first n validation faces:
    10 log10(1 / MSE), the MSE over all their pixels (as training's ``val/psnr``)."""
    batch = open_run_data(run, folder, n=n, split="val", progress=False)
    model = batch.run.model
    with eval_mode(model), torch.no_grad():
        recon = model(batch.images, batch.cond).recon
    assert recon is not None, "an image model reconstructs images"
    mse = float((recon - batch.images).pow(2).mean())
    return 10.0 * math.log10(1.0 / mse)


def _mean(values: list[float]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def score(trained: Trained, args: argparse.Namespace, folder: Path, work: Path) -> dict[str, Any]:
    """``latentcam evaluate`` on the validation faces, and the PSNR; one table row."""
    out = work / f"{trained.name}-evaluate.json"
    code = cli(
        [
            "evaluate",
            str(trained.run),
            "--data",
            str(folder),
            "--out",
            str(out),
            "--n",
            str(args.val),
            "--split",
            "val",
            "--max-map-images",
            str(args.map_images),
            "--no-sanity",
            "--no-directions",
        ]
    )
    if code != 0:
        raise SystemExit(f"latentcam evaluate of {trained.run} failed (exit {code})")
    m = json.loads(out.read_text())
    dis, loc = m["disentanglement"], m["localisation"]
    layer = loc.get("paper_layer") or next(iter(loc["layers"]))
    units = loc["layers"][layer]["mean_over_active"]
    factors = [f["per_layer"][layer] for f in dis.get("factors", []) if "per_layer" in f]
    return {
        "model": trained.name,
        "objective": trained.objective,
        "steps": trained.steps,
        "seconds": round(trained.seconds, 1),
        "layer": layer,
        "psnr": psnr(trained.run, folder, args.val),
        "mig": dis["mig"],
        "dci_disentanglement": dis["dci"]["disentanglement"],
        "dci_completeness": dis["dci"]["completeness"],
        "dci_informativeness": dis["dci"]["informativeness_test"],
        "active": m["units"]["active"],
        "latent_dim": m["latent_dim"],
        "pointing_units": units.get("pointing_game"),
        "chance_units": units.get("chance"),
        "pointing_factors": _mean([f["pointing_game"] for f in factors]),
        "chance_factors": _mean([f["chance"] for f in factors]),
        "factors_scored": len(factors),
        "evaluate_seconds": m.get("seconds"),
    }


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The table: one row per model."""
    lines = [
        "| model | objective | steps | seconds | val PSNR (dB) | MIG | DCI dis. | DCI comp. "
        "| DCI info. | active units | pointing, units (chance) | pointing, factors (chance) "
        "| explained layer |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['objective']} | {r['steps']} | {r['seconds']:.0f} "
            f"| {_f(r['psnr'], 2)} | {_f(r['mig'])} | {_f(r['dci_disentanglement'])} "
            f"| {_f(r['dci_completeness'])} | {_f(r['dci_informativeness'])} "
            f"| {r['active']}/{r['latent_dim']} "
            f"| {_f(r['pointing_units'])} ({_f(r['chance_units'])}) "
            f"| {_f(r['pointing_factors'])} ({_f(r['chance_factors'])}) | {r['layer']} |"
        )
    return lines


def verdict(rows: list[dict[str, Any]], psnr_drop: float = 1.0) -> dict[str, Any]:
    """The disentangling objectives that beat ours on MIG and DCI disentanglement, with a
    PSNR at most ``psnr_drop`` dB lower and a factor pointing game no lower."""
    ours = next(r for r in rows if r["model"] == "ours")
    wins = [
        r["model"]
        for r in rows
        if r["objective"] in ("betatc", "betavae")
        and r["mig"] > ours["mig"]
        and r["dci_disentanglement"] > ours["dci_disentanglement"]
        and r["psnr"] >= ours["psnr"] - psnr_drop
        and (r["pointing_factors"] or 0.0) >= (ours["pointing_factors"] or 0.0)
    ]
    return {"wins": wins, "psnr_drop_allowed": psnr_drop}


def _trained(
    name: str, args: argparse.Namespace, work: Path, train: Any, *train_args: Any
) -> Trained:
    """Train (``train(*train_args)``) and record the result in ``work/NAME-train.json``;
    with ``--reuse``, read that record instead when it exists."""
    record = work / f"{name}-train.json"
    if args.reuse and record.is_file():
        fields = json.loads(record.read_text())
        return Trained(**{**fields, "run": Path(fields["run"])})
    trained = train(*train_args)
    record.write_text(json.dumps({**trained._asdict(), "run": str(trained.run)}))
    return trained


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    work = ensure_dir(Path(args.work))
    t0 = time.perf_counter()
    folder, images = faces(args)
    rows = []  # trained and scored one model after the other: a row as soon as it is done
    for objective in ["ours", *args.objectives.split(",")]:
        if objective == "ours":
            trained = _trained("ours", args, work, train_ours, args, work)
        else:
            name = f"pythae-{objective}"
            trained = _trained(
                name, args, work, train_pythae, objective, args, images, folder, work
            )
        rows.append(score(trained, args, folder, work))
        print("\n".join(markdown(rows[-1:])[2:]), flush=True)
    table = markdown(rows)
    print("\n".join(table))
    load = os.getloadavg()
    summary = {
        "steps": args.steps,
        "batch": args.batch,
        "latent_dim": args.latent_dim,
        "train_faces": int(images.shape[0]),
        "val_faces": args.val,
        "seconds_total": round(time.perf_counter() - t0, 1),
        "load_average": [round(v, 2) for v in load],
        "rows": rows,
        "verdict": verdict(rows),
    }
    if args.out:
        header = (
            f"<!-- benchmarks/pythae_objectives.py: {args.steps} steps of {args.batch}, "
            f"K={args.latent_dim}, load average at the end {load[0]:.1f} -->"
        )
        with atomic_write(args.out) as fh:
            fh.write("\n".join([header, *table, ""]))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
