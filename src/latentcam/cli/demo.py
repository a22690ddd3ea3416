"""``latentcam demo``: the README's main job, on built-in synthetic faces."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train, explain, traverse, evaluate and report on synthetic faces, in minutes",
        description=(
            "Render synthetic faces, train a VAE, a CVAE and a 19-class SegVAE briefly, explain "
            "every latent unit, traverse, evaluate, and write OUT/index.html linking one report "
            "per run. About 10 minutes on two CPU cores with the defaults."
        ),
    )
    p.add_argument("--out", default="latentcam-demo", help="output folder (default: %(default)s)")
    p.add_argument(
        "--minutes",
        type=float,
        default=6.0,
        help="training budget shared by the three models (default: %(default)s)",
    )
    p.add_argument("--n", type=int, default=3000, help="synthetic faces (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from latentcam.demo import run_demo
    from latentcam.errors import InputError

    if args.minutes <= 0:
        raise InputError(f"--minutes must be > 0, got {args.minutes:g}")
    if args.n < 50:
        raise InputError(f"--n must be at least 50 (faces to train on), got {args.n}")
    path = run_demo(args.out, minutes=args.minutes, n_images=args.n, progress=not args.no_progress)
    print(f"open {path.resolve()}")
    return 0
