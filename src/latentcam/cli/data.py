"""``latentcam synth`` and ``latentcam data info``: make synthetic faces, describe a dataset."""

from __future__ import annotations

import argparse
import json

from latentcam.cli.numbers import count, integer, seed
from latentcam.config import DataConfig, ModelConfig
from latentcam.data.synthetic import MAX_SIZE as SYNTH_MAX_SIZE
from latentcam.data.synthetic import MIN_SIZE as SYNTH_MIN_SIZE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``synth`` and ``data`` sub-commands."""
    synth = subparsers.add_parser(
        "synth",
        help="write synthetic faces (CelebAMask-HQ layout) to a folder",
        description=(
            "Render seeded synthetic faces with their 19-class part masks, 40 CelebA attributes "
            "and ground-truth factors, in the CelebAMask-HQ official layout."
        ),
    )
    synth.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    synth.add_argument(
        "--n", type=count, default=DataConfig.synth_n, help="number of faces (default: %(default)s)"
    )
    synth.add_argument(
        "--size",
        type=integer(SYNTH_MIN_SIZE, SYNTH_MAX_SIZE),
        default=ModelConfig.image_size,
        help="image side in pixels (default: %(default)s)",
    )
    synth.add_argument(
        "--seed",
        type=seed,
        default=DataConfig.synth_seed,
        help="random seed (default: %(default)s)",
    )
    synth.add_argument("--yes", action="store_true", help="write more than 2 GB without asking")
    synth.set_defaults(handler=_synth)

    data = subparsers.add_parser("data", help="inspect datasets", description="Inspect datasets.")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    def data_help(args: argparse.Namespace) -> int:
        data.print_help()
        return 2

    data.set_defaults(handler=data_help)
    info = data_commands.add_parser(
        "info",
        help="layout, counts, sizes, classes, attributes and splits of a dataset",
        description=(
            "Describe a dataset: the layout found, image counts and native sizes, part classes "
            "with their pixel frequencies, attributes with their positive rates, factors and "
            "the train/val/test split. Decodes the dataset into the cache at --size on first use."
        ),
    )
    info.add_argument(
        "path", metavar="PATH", help="dataset folder, or 'synth' for the built-in synthetic faces"
    )
    info.add_argument(
        "--size",
        type=integer(4, 4096),
        default=64,
        help="cache size used to count mask pixels (default: %(default)s)",
    )
    info.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    info.add_argument(
        "--cache-dir",
        default="",
        help="cache folder (default: $LATENTCAM_CACHE or ~/.cache/latentcam)",
    )
    info.add_argument(
        "--seed", type=seed, default=0, help="seed of the random split (default: %(default)s)"
    )
    info.add_argument(
        "--skip-bad", action="store_true", help="skip bad files instead of stopping at the first"
    )
    info.add_argument(
        "--synth-n",
        type=count,
        default=DataConfig.synth_n,
        help="faces to render for 'synth' (default: %(default)s)",
    )
    info.set_defaults(handler=_info)


def _synth(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from latentcam.cli.numbers import check_cost
    from latentcam.data.synthetic import estimate_bytes, write_synthetic

    parent = Path(args.out).expanduser().absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    check_cost(
        estimate_bytes(args.n, args.size),
        shutil.disk_usage(parent).free,
        f"{args.n} faces at {args.size} px",
        f"on disk in {parent}",
        "lower --n or --size",
        yes=args.yes,
    )
    out = write_synthetic(args.out, args.n, args.size, args.seed, progress=True)
    print(
        f"wrote {args.n} synthetic faces ({args.size}x{args.size} px, seed {args.seed}) to {out}: "
        "CelebA-HQ-img/, CelebAMask-HQ-mask-anno/, CelebAMask-HQ-attribute-anno.txt, "
        "synthetic-factors.csv, synthetic-meta.json"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    from latentcam.data.info import describe, format_info
    from latentcam.io import check_output

    if args.cache_dir:
        check_output(args.cache_dir, [args.path], what="--cache-dir")
    info = describe(
        args.path,
        args.size,
        cache_dir=args.cache_dir or None,
        seed=args.seed,
        skip_bad=args.skip_bad,
        synth_n=args.synth_n,
    )
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
