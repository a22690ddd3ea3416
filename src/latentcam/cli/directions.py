"""``latentcam directions``: find, score and save latent directions of a trained run.

A thin wrapper over :func:`latentcam.concepts.directions_run`; ``--directions`` and
``--names`` of explain, traverse and evaluate are parsed here too (:func:`add_direction_args`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from latentcam.cli.numbers import count, integer

#: Help of ``--directions`` (explain, traverse, evaluate).
DIRECTIONS_HELP = (
    "explain latent directions instead of units: a directions.npz written by 'latentcam "
    "directions', a vector file (.npy, .json, .txt/.csv: one vector of K numbers per line), or "
    "a finder fit now on the run's training split: attributes, factors, pca, sefa, jacobian "
    "(comma-separated to combine)"
)


def add_direction_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--directions SPEC`` and ``--names LIST`` to a sub-command."""
    parser.add_argument("--directions", metavar="FILE|FINDER", help=DIRECTIONS_HELP)
    parser.add_argument(
        "--names",
        metavar="LIST",
        help="with --directions: the directions to use, e.g. Smiling,Eyeglasses (default: all)",
    )


def split_names(text: str | None) -> list[str] | None:
    """``"Smiling, Eyeglasses"`` -> ["Smiling", "Eyeglasses"]; None when not given."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    return names or None


def register(subparsers: Any) -> None:
    """Add the ``directions`` sub-command."""
    p = subparsers.add_parser(
        "directions",
        help="find, score and save latent directions (concepts) of a trained run",
        description=(
            "Find directions in latent space on the run's training split and score them on its "
            "validation split: attribute probes (a class-balanced logistic regression on "
            "standardised mu per attribute with enough positives; held-out AUROC beside the best "
            "single unit's), known-factor regressions (synthetic faces), PCA (GANSpace), SeFa "
            "(the decoder's first linear layer) and the decoder Jacobian's directions; or a "
            "concept from two image folders (--with/--without, the mean difference of mu, as "
            "TCAV) and vectors from a file (--vector). Writes DIR/directions.npz (for --directions "
            "of explain, traverse and evaluate), DIR/directions.json and DIR/ranking.png."
        ),
        epilog=(
            "example: latentcam directions runs/vae --data synth --out runs/vae/directions "
            "--kind attributes pca"
        ),
    )
    p.add_argument("run", metavar="RUN", help="run folder or .ckpt")
    p.add_argument("--data", metavar="PATH", help="dataset (default: the run's own)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--kind",
        nargs="+",
        default=None,
        choices=("attributes", "factors", "pca", "sefa", "jacobian", "all"),
        metavar="KIND",
        help="finders: attributes, factors, pca, sefa, jacobian or all (every one the data "
        "and the model allow); default: attributes, or none with --with/--vector",
    )
    p.add_argument(
        "--names", metavar="LIST", help="keep these directions only, e.g. Smiling,Eyeglasses"
    )
    p.add_argument(
        "--k",
        type=count,
        default=5,
        help="directions per unsupervised finder (default: %(default)s)",
    )
    p.add_argument(
        "--max-images",
        type=integer(2),
        default=4000,
        help="training (and validation) images encoded (default: %(default)s)",
    )
    p.add_argument(
        "--parts",
        metavar="FILE",
        help="JSON/YAML table attribute -> CelebAMask-HQ part names, replacing the built-in one",
    )
    p.add_argument("--with", dest="with_images", metavar="DIR", help="images showing a concept")
    p.add_argument("--without", dest="without_images", metavar="DIR", help="images without it")
    p.add_argument("--concept", default="concept", help="name of the --with/--without direction")
    p.add_argument("--vector", metavar="FILE", help="user directions from a vector file")
    p.set_defaults(handler=run_directions)


def run_directions(args: argparse.Namespace) -> int:
    from latentcam.concepts import directions_run
    from latentcam.explain.directions import read_parts_table

    kinds = args.kind
    if kinds is None:
        kinds = [] if (args.with_images or args.without_images or args.vector) else ["attributes"]
    out = directions_run(
        args.run,
        args.out,
        data=args.data,
        kinds=kinds,
        names=split_names(args.names),
        k=args.k,
        max_images=args.max_images,
        parts=read_parts_table(args.parts) if args.parts else None,
        with_images=args.with_images,
        without_images=args.without_images,
        concept=args.concept,
        vectors=args.vector,
    )
    summary = json.loads((out / "directions.json").read_text())
    for d in summary["directions"][:40]:
        scores = d["scores"]
        if "auroc" in scores:
            unit = scores.get("best_unit_auroc")
            beside = f", best single unit {unit:.3f}" if isinstance(unit, float) else ""
            print(f"{d['name']:<22} {d['kind']:<10} AUROC {scores['auroc']:.3f}{beside}")
        elif "explained_variance" in scores:
            print(f"{d['name']:<22} {d['kind']:<10} share {scores['explained_variance']:.3f}")
        elif "r2" in scores:
            print(f"{d['name']:<22} {d['kind']:<10} R2 {scores['r2']:.3f}")
        else:
            print(f"{d['name']:<22} {d['kind']}")
    print(f"wrote {out / 'directions.npz'}, {out / 'directions.json'} and {out / 'ranking.png'}")
    return 0
