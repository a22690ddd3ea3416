"""``latentcam train | sample | reconstruct``: thin wrappers over
:func:`latentcam.training.train.train` and :mod:`latentcam.generate`.

Config precedence for ``train`` (later wins): the defaults in latentcam/config.py (or, with
``--resume``, the config stored in the checkpoint), then each ``--config`` file, then the
flags (``--size`` ...), then the ``key=value`` overrides.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from latentcam.cli.numbers import count, seed
from latentcam.cli.threads import add_threads_flag, check_threads, set_threads
from latentcam.config import MODEL_KINDS
from latentcam.errors import InputError

#: Flag (argparse dest) -> config key.
FLAG_KEYS: dict[str, str] = {
    "model": "model.kind",
    "data": "data.path",
    "size": "model.image_size",
    "latent": "model.latent_dim",
    "layers": "model.num_layers",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "minutes": "train.max_minutes",
    "accelerator": "train.accelerator",
    "devices": "train.devices",
    "strategy": "train.strategy",
    "num_nodes": "train.num_nodes",
    "seed": "train.seed",
}


#: Bytes per image value that decoding a batch of samples holds at its peak (the float32
#: images, the decoder's widest activations, the uint8 grid), in units of one float32 image.
SAMPLE_MEMORY_FACTOR = 8


def add_run_flags(p: argparse.ArgumentParser, shape: bool = True) -> None:
    """The flags shared by ``train`` and ``sweep``: model, data, budget, devices, config.

    ``shape=False`` leaves out --size/--latent/--layers (the sweep's grid sets them).
    """
    p.add_argument("--model", choices=MODEL_KINDS, help="model kind (model.kind)")
    p.add_argument("--data", metavar="PATH", help="dataset folder or 'synth' (data.path)")
    if shape:
        p.add_argument("--size", type=int, metavar="S", help="image side in px (model.image_size)")
        p.add_argument("--latent", type=int, metavar="K", help="latent units (model.latent_dim)")
        p.add_argument(
            "--layers", type=int, metavar="L", help="encoder conv blocks (model.num_layers)"
        )
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--epochs", type=int, metavar="E", help="train E epochs (no step limit)")
    bound.add_argument(
        "--max-steps", type=int, metavar="N", help="train N optimiser steps (no epoch limit)"
    )
    p.add_argument(
        "--minutes", type=float, metavar="M", help="wall-clock budget (train.max_minutes)"
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML file or packaged recipe name, e.g. vae64, segvae64 (repeatable)",
    )
    p.add_argument("--accelerator", choices=("cpu", "gpu", "auto"), help="train.accelerator")
    p.add_argument("--devices", type=int, metavar="N", help="processes/GPUs per node")
    p.add_argument("--strategy", choices=("auto", "ddp", "ddp_spawn"), help="train.strategy")
    p.add_argument("--num-nodes", type=int, metavar="M", help="train.num_nodes")
    p.add_argument("--seed", type=int, metavar="X", help="train.seed")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=3e-4"
    )
    _accept_overrides_anywhere(p)


def register(subparsers: Any) -> None:
    """Add the ``train``, ``sample`` and ``reconstruct`` sub-commands."""
    p = subparsers.add_parser(
        "train",
        help="train a vae, cvae or segvae into a run folder",
        description=(
            "Train a model into RUN (config.yaml, checkpoints/{best,last}.ckpt, logs/, "
            "metrics.json). Settings: defaults < --config files < flags < key=value."
        ),
        epilog=(
            "example: latentcam train --model vae --data synth --out runs/vae --size 64 "
            "--latent 100 --epochs 20 train.lr=3e-4"
        ),
    )
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    add_run_flags(p)
    p.add_argument("--resume", metavar="CKPT", help="continue from a .ckpt, a run folder or 'last'")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    add_threads_flag(p, None, "default: torch's own choice (OMP_NUM_THREADS, else the cores)")
    p.set_defaults(handler=run_train)

    s = subparsers.add_parser(
        "sample",
        help="draw faces from a trained model's prior",
        description="Decode prior draws of RUN into DIR/samples.png (attribute-controlled for a cvae).",
        epilog="example: latentcam sample runs/cvae --out samples --set Smiling=1 Eyeglasses=1",
    )
    s.add_argument("run", metavar="RUN", help="run folder or .ckpt")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--n", type=count, default=64, help="number of samples (default 64)")
    s.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="Attr=V",
        help="cvae attribute values, e.g. Smiling=1",
    )
    s.add_argument("--seed", type=seed, default=0, help="seed of the draws (default 0)")
    s.add_argument("--yes", action="store_true", help="draw more than 2 GB of images at once")
    s.add_argument(
        "--z",
        metavar="FILE",
        help="decode this latent vector (JSON saved by 'latentcam app') to DIR/decoded.png",
    )
    s.set_defaults(handler=run_sample)

    r = subparsers.add_parser(
        "reconstruct",
        help="reconstruct dataset images with a trained model",
        description=(
            "Write DIR/reconstruct.png: a row of inputs, a row of reconstructions and, for a "
            "segvae, rows of predicted and true masks."
        ),
        epilog="example: latentcam reconstruct runs/vae --data synth --out recon --n 16",
    )
    r.add_argument("run", metavar="RUN", help="run folder or .ckpt")
    r.add_argument("--data", required=True, metavar="PATH", help="dataset folder or 'synth'")
    r.add_argument("--out", required=True, metavar="DIR")
    r.add_argument("--n", type=count, default=32, help="number of images (default 32)")
    r.add_argument("--split", choices=("train", "val", "test"), default="val")
    r.set_defaults(handler=run_reconstruct)


def _accept_overrides_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let ``key=value`` overrides stand between flags too (``--model vae a=1 --size 64 b=2``).

    argparse fills a ``nargs="*"`` positional from one run of arguments only and reports
    later runs as unrecognised; this collects those ``key=value`` strings into
    ``overrides``, in command-line order. (Sub-parsers are created by ``add_parser``, so the
    method is replaced on this instance rather than in a subclass.)
    """
    parse_known_args = parser.parse_known_args

    def parse_known_args_collecting(
        args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = parse_known_args(args, namespace)
        later = [a for a in extras if "=" in a and not a.startswith("-")]
        parsed.overrides = [*(parsed.overrides or []), *later]
        return parsed, [a for a in extras if a not in later]

    parser.parse_known_args = parse_known_args_collecting  # type: ignore[method-assign,assignment]


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """``key=value`` strings for the flags that were given, in :data:`FLAG_KEYS` order."""
    out = [
        f"{key}={getattr(args, dest)}"
        for dest, key in FLAG_KEYS.items()
        if getattr(args, dest, None) is not None
    ]
    if args.max_steps is not None:
        out.append("train.epochs=-1")  # --max-steps alone bounds the run
    if args.epochs is not None:
        out.append("train.max_steps=-1")
    return out


def _assignments(items: list[str], what: str) -> dict[str, float]:
    """``["Smiling=1"]`` -> ``{"Smiling": 1.0}``; each value a number in [0, 1] (an
    attribute is absent at 0, present at 1).

    Raises:
        InputError: not Name=number, or a value outside [0, 1] (NaN and infinity too).
    """
    values: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            values[name] = float(text)
        except ValueError:
            raise InputError(
                f"{what} '{item}' is not of the form Name=number (e.g. Smiling=1)"
            ) from None
        if not 0.0 <= values[name] <= 1.0:
            raise InputError(
                f"{what} '{item}': attribute values must lie in [0, 1] (0 absent, 1 present)"
            )
    return values


def run_train(args: argparse.Namespace) -> int:

    from latentcam.checkpoint import config_of, read_checkpoint, resolve_resume
    from latentcam.config import load_config

    check_threads(args.threads)
    base = None
    if args.resume:
        base = config_of(read_checkpoint(resolve_resume(args.resume, Path(args.out))))
    cfg = load_config(args.config, [*flag_overrides(args), *args.overrides], base=base)

    # Lightning is imported only now, after the config is known to be valid: a bad key fails fast
    from latentcam.training.train import is_launching_process, train

    set_threads(args.threads)  # only now: a bad config or checkpoint leaves it as it was
    result = train(
        cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress
    )
    if is_launching_process():
        m = result.metrics
        shown = [
            f"{k} {m[k]:.4g}"
            for k in ("val/loss", "val/psnr", "val/miou", "val/iou_binary")
            if m.get(k) is not None
        ]
        print(
            f"trained {cfg.model.kind} to step {m['global_step']} in {m['train_seconds']:.1f} s: "
            f"{', '.join(shown)}"
        )
        print(
            f"run: {result.run_dir} (best: {result.best_ckpt}, metrics: {result.run_dir / 'metrics.json'})"
        )
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from latentcam.checkpoint import load_run
    from latentcam.cli.numbers import available_memory, check_cost
    from latentcam.figures import make_grid, save_png
    from latentcam.generate import sample
    from latentcam.io import ensure_dir
    from latentcam.models.protocol import is_conditional
    from latentcam.runs import check_run_output

    attrs = _assignments(args.set, "--set")
    run = load_run(args.run)
    check_run_output(args.out, run, None, args.z)
    if args.z:
        return _decode_saved_z(args, run)
    if attrs and not is_conditional(run.model):
        raise InputError(
            f"--set needs a cvae run; {args.run} holds a {run.config.model.kind}, which takes "
            "no attributes"
        )
    size = run.config.model.image_size
    check_cost(
        args.n * 3 * size * size * 4 * SAMPLE_MEMORY_FACTOR,
        available_memory(),
        f"{args.n} samples at {size} px",
        "of memory (they are decoded at once)",
        "lower --n",
        yes=args.yes,
    )
    images = sample(run.model, args.n, attrs or None, seed=args.seed, base=run.attr_means)
    out = ensure_dir(args.out)
    path = save_png(out / "samples.png", make_grid(images, nrow=8))
    print(f"wrote {args.n} samples: {path}")
    return 0


def _decode_saved_z(args: argparse.Namespace, run: Any) -> int:
    """``sample --z FILE``: decode a latent vector saved by ``latentcam app`` into
    ``DIR/decoded.png`` (a CVAE decodes with the saved condition, else the training
    attribute means; a mask-only SegVAE's picture is its coloured predicted mask)."""
    import torch

    from latentcam.app.session import read_z_file
    from latentcam.figures import save_png, to_uint8_hwc
    from latentcam.generate import as_pictures, attribute_vector
    from latentcam.io import ensure_dir

    record = read_z_file(args.z)
    kind = run.config.model.kind
    if record["model"] != kind:
        raise InputError(
            f"--z {args.z} was saved from a {record['model']} model but {args.run} is a "
            f"{kind}; save the vector from a page showing this run"
        )
    model = run.model.eval()
    if record["latent_dim"] != model.latent_dim:
        raise InputError(
            f"--z {args.z} holds {record['latent_dim']} latent units but {args.run} has "
            f"{model.latent_dim}; save the vector from a page showing this run"
        )
    z = torch.tensor(record["z"], dtype=torch.float32)[None]
    cond = None
    if model.cond_dim > 0:
        saved = record.get("cond")
        cond = (
            torch.tensor(saved, dtype=torch.float32)
            if saved is not None
            else attribute_vector(None, base=run.attr_means)
        )[None]
    with torch.no_grad():
        images = as_pictures(model.decode(z, cond))
    out = ensure_dir(args.out)
    path = save_png(out / "decoded.png", to_uint8_hwc(images)[0])
    print(f"decoded the latent vector of {args.z}: {path}")
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from latentcam.checkpoint import load_run
    from latentcam.data.classes import binary_mask
    from latentcam.figures import make_grid, save_png
    from latentcam.generate import colorize_labels, reconstruct
    from latentcam.io import ensure_dir
    from latentcam.models.protocol import has_image_output, has_seg_output, seg_class_count
    from latentcam.models.segvae import predicted_labels
    from latentcam.runs import check_run_output, open_run_data
    from latentcam.training.module import seg_target_is_binary

    run = load_run(args.run)
    check_run_output(args.out, run, args.data)
    batch = open_run_data(run, args.data, n=args.n, split=args.split)
    cfg, model = batch.run.config, batch.run.model
    rows = [batch.images]
    if has_image_output(model):
        rows.append(reconstruct(model, batch.images, batch.cond))
    if has_seg_output(model):
        if batch.parts is None:
            raise InputError(f"{args.data} has no part masks to compare the segvae with")
        binary = seg_target_is_binary(cfg)
        with torch.no_grad():
            seg_logits = model(batch.images).seg_logits
        assert seg_logits is not None, "a segvae returns seg_logits"
        target = (
            torch.from_numpy(binary_mask(batch.parts.numpy())).long() if binary else batch.parts
        )
        classes = 2 if binary else seg_class_count(model)
        rows.append(colorize_labels(predicted_labels(seg_logits), classes))
        rows.append(colorize_labels(target, classes))
    n = batch.images.shape[0]
    grid = make_grid(torch.cat([row.cpu() for row in rows]), nrow=n)
    path = save_png(ensure_dir(args.out) / "reconstruct.png", grid)
    print(f"wrote {n} inputs and reconstructions ({len(rows)} rows): {path}")
    return 0
