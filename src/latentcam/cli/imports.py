"""``latentcam import``: another library's VAE (or plain PyTorch code) as a run folder.

A thin wrapper over :func:`latentcam.models.saved.import_model`; the folder it writes
(``adapter.json`` + ``weights.safetensors``) is read by every command that takes a run.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from latentcam.cli.numbers import count
from latentcam.errors import InputError


def register(subparsers: Any) -> None:
    """Add the ``import`` sub-command."""
    p = subparsers.add_parser(
        "import",
        help="import a diffusers, pythae or plain PyTorch VAE as a run folder",
        description=(
            "Write another library's VAE as a latentcam run folder (adapter.json + "
            "weights.safetensors) that explain, traverse, evaluate, directions, report, sample, "
            "reconstruct and app read. --from diffusers DIR: a folder written by "
            "AutoencoderKL.save_pretrained, read locally (nothing is fetched from a hub). "
            "--from pythae DIR: a folder written by pythae's model.save(dir), with pythae's "
            "default networks. --from python MODULE:FACTORY: a function (importable, also from "
            "the current directory) that returns a diffusers or pythae model or a "
            "latentcam.wrap(...) adapter; the run folder rebuilds it by calling the factory, so "
            "read such folders only where that code is trusted."
        ),
        epilog=(
            "example: latentcam import --from diffusers ./my_vae --out runs/sd_vae --size 64 "
            "--data synth"
        ),
    )
    p.add_argument(
        "--from",
        dest="source",
        nargs=2,
        required=True,
        metavar=("FORMAT", "WHERE"),
        help="diffusers DIR, pythae DIR or python MODULE:FACTORY",
    )
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="state dict loaded strictly into the model (.safetensors, or a torch.save file "
        "read with weights_only=True)",
    )
    p.add_argument(
        "--kwargs",
        metavar="JSON",
        help="keyword arguments of the factory (--from python), a JSON object recorded in the "
        "run folder, e.g. '{\"latent_dim\": 16}'",
    )
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    p.add_argument(
        "--size", type=count, metavar="S", help="image side to explain (default: the model's own)"
    )
    p.add_argument("--data", metavar="PATH", help="dataset the model expects (a folder or 'synth')")
    p.set_defaults(handler=run_import)


def _kwargs(text: str | None) -> dict[str, Any] | None:
    """The JSON object of ``--kwargs`` (None without it)."""
    if text is None:
        return None
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"--kwargs is not valid JSON ({err}): {text}") from None
    if not isinstance(kwargs, dict):
        raise InputError(f"--kwargs must be a JSON object of keyword arguments, got {text}")
    return kwargs


def run_import(args: argparse.Namespace) -> int:
    from latentcam.io import check_output
    from latentcam.models.saved import import_model, read_spec

    source, where = args.source
    kwargs = _kwargs(args.kwargs)
    out = check_output(args.out, [where, args.weights, args.data], owns_run=True)
    out = import_model(
        source,
        where,
        out,
        weights=args.weights,
        image_size=args.size,
        data=args.data,
        kwargs=kwargs,
    )
    spec = read_spec(out)
    shape = "x".join(str(d) for d in spec["latent_shape"])
    print(
        f"imported {source} model: {spec['image_size']} px images, latent {shape}, explained at "
        f"{spec['explain_layer']}; wrote {out}"
    )
    return 0
