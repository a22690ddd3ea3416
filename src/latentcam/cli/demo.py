"""``latentcam demo``: the README's main job, on built-in synthetic faces."""

from __future__ import annotations

import argparse
from typing import Any

from latentcam.cli.numbers import integer, real
from latentcam.config import SEED_MAX

#: The demo's largest training cap (a week), step budget and data set; beyond them it is no demo.
MAX_MINUTES = 7 * 24 * 60
MAX_STEPS = 1_000_000
MAX_FACES = 100_000


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train, explain, traverse, evaluate and report on synthetic faces, in minutes",
        description=(
            "Render synthetic faces, train a VAE, a CVAE and a binary SegVAE (the paper's mask "
            "of the face parts) for a fixed number of steps each, explain every latent unit, "
            "traverse, evaluate, and write OUT/index.html linking one report per run, each opening with what to trust in it. The "
            "budgets are steps, so the same --seed gives the same metrics on a busy machine "
            "(it only takes longer); under 10 minutes on two quiet CPU cores."
        ),
    )
    p.add_argument("--out", default="latentcam-demo", help="output folder (default: %(default)s)")
    p.add_argument(
        "--max-steps",
        type=integer(1, MAX_STEPS),
        default=None,
        metavar="N",
        help="train every model N steps instead of its budget (e.g. 20: a quick, undertrained "
        "demo whose reports show their warnings)",
    )
    p.add_argument(
        "--minutes",
        type=real(0, MAX_MINUTES, lo_open=True),
        default=None,
        help="optional cap on the training time, shared by the models in proportion to their "
        "steps; a model it stops early misses its budget, with a WARNING (default: no cap)",
    )
    p.add_argument(
        "--n",
        type=integer(50, MAX_FACES, "faces to train on"),
        default=3000,
        help="synthetic faces (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=integer(0, SEED_MAX),
        default=0,
        help="training seed: the same seed, the same metrics (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from latentcam.demo import run_demo

    path = run_demo(
        args.out,
        n_images=args.n,
        seed=args.seed,
        max_steps=args.max_steps,
        minutes=args.minutes,
        progress=not args.no_progress,
    )
    print(f"open {path.resolve()}")
    return 0
