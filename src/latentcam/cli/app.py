"""``latentcam app``: the interactive latent explorer in the browser (a local, offline page).

A thin wrapper: opens the run with :meth:`latentcam.app.session.ExplorerSession.open`,
builds the service with :func:`latentcam.app.server.create_app` and serves it with uvicorn.
"""

from __future__ import annotations

import argparse
from typing import Any

from latentcam.cli.numbers import count, integer, port
from latentcam.cli.threads import add_threads_flag, check_threads, set_threads
from latentcam.explain.cam import METHODS


def register(subparsers: Any) -> None:
    """Add the ``app`` sub-command."""
    p = subparsers.add_parser(
        "app",
        help="interactive latent explorer in the browser (sliders, live decode, heatmaps)",
        description=(
            "Serve a local page (fully offline) to explore a run: pick or upload an image, "
            "move latent units with sliders and watch the decoded image, the unit's Grad-CAM "
            "on the re-encoded output and its effect map update live; direction sliders "
            "(attribute directions found on the run's data, or --directions FILE) move along "
            "concepts in data standard deviations, with their heatmaps; CVAE attribute "
            "toggles; SegVAE part mask and Seg-Grad-CAM per class; save the view as PNG "
            "and the latent vector as JSON (read back with --z)."
        ),
        epilog="example: latentcam app runs/vae64 --data synth --port 8765",
    )
    p.add_argument("run", metavar="RUN", help="run folder or .ckpt")
    p.add_argument(
        "--data", metavar="PATH", help="dataset folder or 'synth' (default: the run's own data)"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; anything but a loopback address lets other machines use "
        "the page (a warning is logged) (default: %(default)s)",
    )
    p.add_argument(
        "--port", type=port, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    p.add_argument(
        "--top",
        type=count,
        default=8,
        help="sliders for the top units by KL (default: %(default)s)",
    )
    p.add_argument(
        "--gallery",
        type=integer(0),
        default=16,
        help="per-unit maps in the gallery (default: %(default)s)",
    )
    p.add_argument(
        "--z", metavar="FILE", help="start at a latent vector saved from the page (JSON)"
    )
    p.add_argument(
        "--n", type=count, default=64, help="dataset images offered (default: %(default)s)"
    )
    p.add_argument(
        "--split",
        choices=("train", "val", "test", "all"),
        default="val",
        help="split the images come from (default: %(default)s)",
    )
    p.add_argument(
        "--directions",
        metavar="FILE|FINDER",
        help="direction sliders: a directions.npz written by 'latentcam directions', a vector "
        "file (.npy, .json, .txt/.csv: one vector of K numbers per line), or a finder fit on the "
        "run's training split: attributes, factors, pca, sefa, jacobian (comma-separated to "
        "combine) (default: attributes, when the data has attributes)",
    )
    p.add_argument(
        "--names",
        metavar="LIST",
        help="the directions with a slider, e.g. Smiling,Eyeglasses (default: all)",
    )
    p.add_argument("--layer", metavar="NAME", help="explanation layer (default: last encoder conv)")
    p.add_argument(
        "--method", choices=METHODS, default="gradcam", help="CAM method (default: %(default)s)"
    )
    add_threads_flag(p, 1, "one image at a time is fastest on 1 (default: %(default)s)")
    p.set_defaults(handler=run_app)


def run_app(args: argparse.Namespace) -> int:
    import asyncio

    from latentcam.app.server import bind_socket, create_app, make_server, server_url
    from latentcam.app.session import ExplorerSession, read_z_file
    from latentcam.cli.directions import split_names

    check_threads(args.threads)
    record = read_z_file(args.z) if args.z else None  # a bad file fails before the model loads
    options = {
        "n": args.n,
        "split": args.split,
        "top": args.top,
        "gallery": args.gallery,
        "layer": args.layer,
        "method": args.method,
    }
    # the directions belong to this run: a checkpoint loaded from the page finds its own
    session = ExplorerSession.open(
        args.run,
        data=args.data,
        directions=args.directions,
        names=split_names(args.names),
        **options,
    )
    if record is not None:
        session.apply_z(record, args.z)
    sock = bind_socket(args.host, args.port)
    set_threads(args.threads)  # serving only: a failure above leaves it as it was
    app = create_app(session, data=args.data, open_options=options, host=args.host)
    print(f"latentcam app: serving {args.run} at {server_url(sock)} (Ctrl+C to stop)", flush=True)
    asyncio.run(make_server(app).serve(sockets=[sock]))
    return 0
