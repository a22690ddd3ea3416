"""``latentcam sweep``: train and measure every point of an image size x latent x depth grid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from latentcam.cli.numbers import count
from latentcam.cli.train import add_run_flags, flag_overrides


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="the paper's architecture sweep (size x latent x layers) with a summary table",
        description=(
            "Train and evaluate one run per grid point under DIR/size{S}-latent{K}-layers{L}, "
            "then write DIR/summary.csv, DIR/summary.md (with the recommended latent size), "
            "metric plots and a figure sheet. Resumable: finished points are skipped, an "
            "interrupted point resumes from its last checkpoint. Training flags as for 'train' "
            "apply to every point (DDP: --devices N --strategy ddp)."
        ),
        epilog=(
            "example: latentcam sweep --data synth --out sweep --grid size=64 latent=5,15,50,100 "
            "layers=4 --minutes 2.  Several machines: add --points i/n on machine i of n, "
            "sharing DIR; then run once more without --points to write the summary."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder")
    p.add_argument(
        "--grid",
        nargs="+",
        required=True,
        metavar="AXIS=V1,V2",
        help="axes size, latent, layers, e.g. size=64,128 latent=5,15,50,100 layers=3,4,5",
    )
    p.add_argument("--points", metavar="i/n", help="run only points i, i+n, ... (several machines)")
    p.add_argument(
        "--eval-n",
        type=count,
        default=128,
        help="validation images per point (default: %(default)s)",
    )
    add_run_flags(p, shape=False)
    p.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from latentcam.config import load_config
    from latentcam.sweep import parse_grid, parse_points, run_sweep

    # --grid takes every word after it: dotted key=value words are config overrides
    overrides = [g for g in args.grid if "." in g.partition("=")[0]]
    grid = parse_grid([g for g in args.grid if g not in overrides])
    points = parse_points(args.points)
    base = load_config(args.config, [*flag_overrides(args), *args.overrides, *overrides])
    rows = run_sweep(
        base, grid, args.out, points=points, eval_n=args.eval_n, progress=not args.no_progress
    )
    if rows:
        print((Path(args.out) / "summary.md").read_text())
        print(f"summary: {args.out}/summary.csv, plots and sheet.png in {args.out}")
    else:
        print(f"points {args.points} done; run again without --points to write the summary")
    return 0
