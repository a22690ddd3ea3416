"""``latentcam demo``: the README's main job, on built-in synthetic faces."""

from __future__ import annotations

import argparse
from typing import Any

from latentcam.cli.numbers import integer, real

#: The demo's largest training budget (a week) and data set; beyond them it is no demo.
MAX_MINUTES = 7 * 24 * 60
MAX_FACES = 100_000


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train, explain, traverse, evaluate and report on synthetic faces, in minutes",
        description=(
            "Render synthetic faces, train a VAE, a CVAE (conditioned on the 40 attributes) and "
            "a SegVAE that predicts the paper's binary mask of the face parts (foreground vs "
            "background and skin; not the 19 classes), explain every latent unit, traverse, "
            "evaluate, and write OUT/index.html linking one report per run, each opening with "
            "what to trust in it. About 10 minutes on two CPU cores with the defaults."
        ),
    )
    p.add_argument("--out", default="latentcam-demo", help="output folder (default: %(default)s)")
    p.add_argument(
        "--minutes",
        type=real(0, MAX_MINUTES, lo_open=True),
        default=6.0,
        help="training budget shared by the three models (default: %(default)s)",
    )
    p.add_argument(
        "--n",
        type=integer(50, MAX_FACES, "faces to train on"),
        default=3000,
        help="synthetic faces (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from latentcam.demo import run_demo

    path = run_demo(args.out, minutes=args.minutes, n_images=args.n, progress=not args.no_progress)
    print(f"open {path.resolve()}")
    return 0
