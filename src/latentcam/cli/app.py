"""``latentcam app``: the interactive latent explorer in the browser (a local, offline page).

A thin wrapper: opens the run with :meth:`latentcam.app.session.ExplorerSession.open`,
builds the service with :func:`latentcam.app.server.create_app` and serves it with uvicorn.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
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
        epilog="example: latentcam app runs/vae64 --data synth --port 8765; "
        "latentcam app --runs runs (the page offers every run under runs/)",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        nargs="?",
        help="run folder or .ckpt to start with (with --runs: relative to it, default the "
        "first run listed there)",
    )
    p.add_argument(
        "--runs",
        metavar="FOLDER",
        help="the folder the page may load checkpoints from, and lists (default: RUN itself; "
        "for a .ckpt file, its run folder)",
    )
    p.add_argument(
        "--data", metavar="PATH", help="dataset folder or 'synth' (default: the run's own data)"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; anything but a loopback address lets other machines reach "
        "the page, which then needs a token (default: %(default)s)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("LATENTCAM_APP_TOKEN"),
        help="the token every request must carry (?token=... in the printed address, then a "
        "cookie); default: $LATENTCAM_APP_TOKEN, else a random one when --host is not a "
        "loopback address, else none",
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

    from latentcam.app.runs import RunsFolder
    from latentcam.app.server import (
        bind_socket,
        check_token,
        create_app,
        is_loopback,
        make_server,
        new_token,
        server_url,
    )
    from latentcam.app.session import ExplorerSession, read_z_file
    from latentcam.cli.directions import split_names
    from latentcam.errors import InputError

    check_threads(args.threads)
    token = check_token(args.token) if args.token is not None else None
    if token is None and not is_loopback(args.host):
        token = new_token()
    record = read_z_file(args.z) if args.z else None  # a bad file fails before the model loads
    folder = RunsFolder(args.runs) if args.runs else None
    if folder is None and args.run is None:
        raise InputError("give a RUN to explore, or --runs FOLDER to start with its first run")
    run = args.run
    if folder is not None:
        if run is None:
            listing = folder.list().entries
            if not listing:
                raise InputError(
                    f"no run under --runs {args.runs}; train one into it (latentcam train "
                    f"--out {args.runs}/NAME) or give another folder"
                )
            run = listing[0].path
        elif Path(run).exists():  # a path from here (else: one relative to the folder)
            run = str(Path(run).resolve())
        run = str(folder.resolve(run))  # outside the folder: an error
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
        run,
        data=args.data,
        directions=args.directions,
        names=split_names(args.names),
        **options,
    )
    if record is not None:
        session.apply_z(record, args.z)
    sock = bind_socket(args.host, args.port)
    set_threads(args.threads)  # serving only: a failure above leaves it as it was
    folder = folder or RunsFolder.around(run)
    app = create_app(
        session, data=args.data, open_options=options, host=args.host, runs=folder, token=token
    )
    url = server_url(sock) + (f"?token={token}" if token else "")
    print(f"latentcam app: serving {run} at {url} (Ctrl+C to stop)", flush=True)
    print(f"latentcam app: the page loads checkpoints from under {folder.root}", flush=True)
    asyncio.run(make_server(app).serve(sockets=[sock]))
    return 0
