"""``latentcam explain``: Grad-CAM of every latent unit of a trained run, as files.

A thin wrapper over :func:`latentcam.explain.run.explain_run`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from latentcam.cli.directions import add_direction_args, split_names
from latentcam.cli.numbers import count
from latentcam.explain.cam import METHODS

#: Help of ``--layer`` (shared by explain, evaluate and report).
LAYER_HELP = (
    "layer(s) to explain, several at once: encoder layer names (e.g. encoder.blocks.1 "
    "encoder.blocks.3), 'default' (the paper's layer: the last encoder conv, the default), "
    "'all' (every encoder block), 'fusion' (maps of the blocks of at least 8x8 and the last "
    "block, normalised, upsampled and averaged, as LayerCAM), 'auto' (the layer that localises "
    "best on these images: best mean rank over pointing game minus chance, energy in part and "
    "agreement with effect maps; explain writes the choice and its reason to "
    "layer_choice.json, evaluate and report to localisation.auto)"
)


def register(subparsers: Any) -> None:
    """Add the ``explain`` sub-command."""
    p = subparsers.add_parser(
        "explain",
        help="Grad-CAM maps of every latent unit of a trained run",
        description=(
            "Explain N images of a run with Grad-CAM for all K latent units at once (Liu et "
            "al. 2020). Writes DIR/maps.npz (maps (N, K, h, w) unnormalised, mean_map, mu, "
            "units, images, kl), DIR/grid.png (input, output, averaged map, one overlay per "
            "unit) and DIR/unit_KKK.png per drawn unit. Without --units, all K maps are "
            "saved and the --top units by KL are drawn. With several --layer values, maps.npz "
            "also holds maps__LAYER and mean_map__LAYER per layer (maps/mean_map are the first "
            "layer's) and grid__LAYER.png is drawn per further layer."
        ),
        epilog="example: latentcam explain runs/vae --data synth --out runs/vae/explain --units 0,3,42",
    )
    p.add_argument("run", metavar="RUN", help="run folder or .ckpt")
    p.add_argument(
        "--data", metavar="PATH", help="dataset folder or 'synth' (default: the run's own data)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--n", type=count, default=16, help="images to explain (default: %(default)s)")
    p.add_argument(
        "--units", metavar="LIST", help="unit indices to save and draw, e.g. 0,3,42 or 0-9"
    )
    p.add_argument(
        "--top",
        type=count,
        default=10,
        help="without --units: draw this many units, highest KL first (default: %(default)s)",
    )
    p.add_argument(
        "--method", choices=METHODS, default="gradcam", help="CAM method (default: %(default)s)"
    )
    p.add_argument("--layer", nargs="+", action="extend", metavar="NAME", help=LAYER_HELP)
    p.add_argument(
        "--split",
        choices=("train", "val", "test", "all"),
        default="val",
        help="split the images come from (default: %(default)s)",
    )
    add_direction_args(p)
    p.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    from latentcam.checkpoint import load_run
    from latentcam.concepts import resolve_directions
    from latentcam.errors import InputError
    from latentcam.explain.run import explain_run
    from latentcam.runs import parse_unit_ranges, parse_units

    parse_unit_ranges(args.units)  # a typo fails before the model loads
    if args.names and not args.directions:
        raise InputError("--names selects directions: give --directions too")
    if args.directions and args.units:
        raise InputError("give --units or --directions, not both")
    run = load_run(args.run)
    units = parse_units(args.units, run.model.latent_dim)
    directions = None
    if args.directions:
        directions = resolve_directions(args.directions, run, args.data, split_names(args.names))
    out = explain_run(
        run,
        args.data,
        args.out,
        n=args.n,
        units=units,
        method=args.method,
        layer=args.layer,
        split=args.split,
        top=args.top,
        directions=directions,
    )
    if directions is not None:
        print(
            f"wrote {out / 'maps.npz'}, {out / 'grid.png'} and {len(directions)} direction figures"
        )
        return 0
    choice = out / "layer_choice.json"
    if "auto" in (args.layer or []) and choice.is_file():
        print(f"layer auto: {json.loads(choice.read_text())['reason']} ({choice})")
    print(f"wrote {out / 'maps.npz'}, {out / 'grid.png'} and the unit figures in {out}")
    return 0
