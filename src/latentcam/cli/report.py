"""``latentcam report``: a self-contained HTML report of a run."""

from __future__ import annotations

import argparse

from latentcam.cli.explain import LAYER_HELP
from latentcam.cli.numbers import count
from latentcam.explain.cam import METHODS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rep = subparsers.add_parser(
        "report",
        help="offline HTML report reproducing the paper's figures for a run",
        description=(
            "Compute the paper's figures for a run (input/recon/averaged heatmap, per-unit "
            "heatmaps, traversals, CVAE edits, segmentation and Seg-Grad-CAM) and the metrics of "
            "'latentcam evaluate', and write DIR/index.html (viewable offline) and DIR/metrics.json."
        ),
    )
    rep.add_argument("run", metavar="RUN", help="run folder or checkpoint (.ckpt)")
    rep.add_argument(
        "--out",
        help="output folder (DIR/index.html); default RUN/report, a folder of its own inside "
        "the run (never the run's checkpoints, config.yaml or metrics.json)",
    )
    rep.add_argument("--data", help="dataset (default: the run's own)")
    rep.add_argument(
        "--n", type=count, default=6, help="images in the figures (default: %(default)s)"
    )
    rep.add_argument(
        "--eval-n", type=count, default=128, help="images for the metrics (default: %(default)s)"
    )
    rep.add_argument("--method", default="gradcam", choices=METHODS)
    rep.add_argument(
        "--layer",
        nargs="+",
        action="extend",
        dest="layers",
        metavar="NAME",
        help=LAYER_HELP + " (default: all fusion auto)",
    )
    rep.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        metavar="METHOD",
        help="CAM methods compared per layer, e.g. gradcam layercam hirescam (default: --method)",
    )
    rep.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from latentcam.report.build import build_report

    path = build_report(
        args.run,
        args.out,
        data=args.data,
        n=args.n,
        eval_n=args.eval_n,
        method=args.method,
        methods=args.methods,
        **({"layers": args.layers} if args.layers else {}),
    )
    print(f"report: {path.resolve()}")
    return 0
