"""``latentcam traverse`` and ``latentcam evaluate``: latent traversals and interpretability metrics."""

from __future__ import annotations

import argparse
import json
from typing import Any

from latentcam.cli.directions import add_direction_args, split_names
from latentcam.cli.explain import LAYER_HELP
from latentcam.cli.numbers import count
from latentcam.errors import InputError
from latentcam.explain.cam import METHODS

_METHOD_HELP = f"CAM method: {', '.join(METHODS)} (default: %(default)s)"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``traverse`` and ``evaluate`` sub-commands."""
    trav = subparsers.add_parser(
        "traverse",
        help="latent traversals with per-step heatmaps and effect maps",
        description=(
            "Add values to one latent unit at a time, decode, and show per step the decoded image, "
            "the unit's Grad-CAM on the decoded image re-encoded, and the effect map "
            "|decode(z + d e_k) - decode(z)|. Writes a strip PNG and a GIF per unit and "
            "traversal.npz, for the paper's additive steps and for steps in prior SDs (and, for "
            "a CVAE, for condition attributes). With --directions, steps along each direction w "
            "(--sigmas, in units of the data's standard deviation along w) into DIR/directions/, "
            "with the heatmap of mu . w and the effect map at every step."
        ),
    )
    trav.add_argument("run", metavar="RUN", help="run folder or checkpoint (.ckpt)")
    trav.add_argument("--out", required=True, help="output folder")
    trav.add_argument("--data", help="dataset (default: the run's own)")
    trav.add_argument("--units", help="units, e.g. 0,3,42 or 0-4 (default: the 5 with highest KL)")
    trav.add_argument("--deltas", help="additive steps (default: the paper's 0.1,0.2,...,0.9)")
    trav.add_argument("--sigmas", help="steps in prior SDs (default: -3,-2,-1,0,1,2,3)")
    trav.add_argument("--n", type=count, default=4, help="images traversed (default: %(default)s)")
    trav.add_argument(
        "--attributes",
        help="CVAE: attributes to traverse (default: Smiling,Eyeglasses,Wearing_Hat)",
    )
    trav.add_argument("--layer", help="explanation layer (default: the model's last encoder conv)")
    trav.add_argument("--method", default="gradcam", choices=METHODS, help=_METHOD_HELP)
    add_direction_args(trav)
    trav.set_defaults(handler=_traverse)

    ev = subparsers.add_parser(
        "evaluate",
        help="interpretability metrics of a run (JSON)",
        description=(
            "Measure a run: KL and active units, unit x part effect table, Grad-CAM localisation "
            "(energy in part, pointing game, agreement with effect maps) per layer, unit rankings "
            "and attribute probes, MIG/DCI on synthetic faces, the randomisation sanity check, "
            "segmentation IoU and Seg-Grad-CAM, CVAE attribute control; with several --layer values "
            "and --methods, a layer x method comparison (localisation.comparison), with --layer "
            "auto the chosen layer and why (localisation.auto); decoder-side maps and the unit x "
            "part matrices from both sides (decoder). Keys: see the README and "
            "latentcam.evaluate."
        ),
    )
    ev.add_argument("run", metavar="RUN", help="run folder or checkpoint (.ckpt)")
    ev.add_argument("--data", help="dataset (default: the run's own)")
    ev.add_argument("--out", required=True, help="JSON file to write")
    ev.add_argument("--n", type=count, default=256, help="images evaluated (default: %(default)s)")
    ev.add_argument("--split", default="val", choices=("train", "val", "test", "all"))
    ev.add_argument(
        "--layer", nargs="+", action="extend", dest="layers", metavar="NAME", help=LAYER_HELP
    )
    ev.add_argument("--method", default="gradcam", choices=METHODS, help=_METHOD_HELP)
    ev.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        metavar="METHOD",
        help="CAM methods compared per layer in localisation.comparison, e.g. gradcam layercam "
        "hirescam (default: --method)",
    )
    ev.add_argument(
        "--max-map-images",
        type=count,
        default=32,
        help="images used for heatmaps, effect and decoder maps (default: %(default)s)",
    )
    ev.add_argument("--no-sanity", action="store_true", help="skip the randomisation sanity check")
    add_direction_args(ev)
    ev.add_argument(
        "--no-directions",
        action="store_true",
        help="skip the directions section (on by default when the data has attributes)",
    )
    ev.add_argument(
        "--direction-images",
        type=count,
        default=64,
        help="images the directions' heatmaps are scored on (default: %(default)s)",
    )
    ev.set_defaults(handler=_evaluate)


def _traverse(args: argparse.Namespace) -> int:
    from latentcam.checkpoint import load_run
    from latentcam.explain.traversal import traverse_run
    from latentcam.runs import parse_floats, parse_units

    run = load_run(args.run)
    attributes = args.attributes.split(",") if args.attributes else None
    directions = _directions(args, run)
    result = traverse_run(
        run,
        args.out,
        data=args.data,
        units=parse_units(args.units, run.model.latent_dim),
        deltas=parse_floats(args.deltas, "--deltas"),
        sigmas=parse_floats(args.sigmas, "--sigmas"),
        n=args.n,
        attributes=attributes,
        layer=args.layer,
        method=args.method,
        directions=directions,
    )
    for mode, saved in result.saved.items():
        print(f"{mode}: {len(saved.strips)} strips and GIFs, arrays in {saved.arrays}")
    return 0


def _directions(args: argparse.Namespace, run: Any) -> Any:
    """The DirectionSet of ``--directions``/``--names`` (None without them)."""
    from latentcam.concepts import resolve_directions

    if args.names and not args.directions:
        raise InputError("--names selects directions: give --directions too")
    if not args.directions:
        return None
    return resolve_directions(args.directions, run, args.data, split_names(args.names))


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def _evaluate(args: argparse.Namespace) -> int:
    from latentcam.checkpoint import load_run
    from latentcam.evaluate import evaluate_run

    if args.no_directions and args.directions:
        raise InputError("give --directions or --no-directions, not both")
    run = load_run(args.run)
    directions = False if args.no_directions else _directions(args, run)
    m = evaluate_run(
        run,
        data=args.data,
        out=args.out,
        n=args.n,
        split=args.split,
        layers=args.layers,
        method=args.method,
        methods=args.methods,
        max_map_images=args.max_map_images,
        sanity=not args.no_sanity,
        directions=directions,
        direction_images=args.direction_images,
    )
    head = {
        "active_units": f"{m['units']['active']}/{m['latent_dim']}",
        **{
            f"{layer}: {k}": round(v, 3)
            for layer, e in m["localisation"]["layers"].items()
            for k, v in e["mean_over_active"].items()
            if isinstance(v, float)
        },
    }
    if "disentanglement" in m:
        head["mig"] = round(m["disentanglement"]["mig"], 3)
        head["dci_disentanglement"] = round(m["disentanglement"]["dci"]["disentanglement"], 3)
    if "sanity" in m:
        head["sanity_check"] = "passes" if m["sanity"]["passes"] else "FAILS"
    print(json.dumps(head, indent=1))
    loc = m["localisation"]
    print(
        f"{'layer':<18} {'method':<9} {'map':>6} {'energy':>7} {'pointing':>8} {'chance':>7} "
        f"{'rho_eff':>7} {'rho_dec':>7}"
    )
    for row in loc["comparison"]:
        size = "x".join(map(str, row["map_size"])) if row["layer"] != "fusion" else "fused"
        cells = [
            _fmt(row[k])
            for k in (
                "energy_in_part",
                "pointing_game",
                "chance",
                "spearman_cam_effect",
                "spearman_cam_decoder",
            )
        ]
        print(
            f"{row['layer']:<18} {row['method']:<9} {size:>6} {cells[0]:>7} {cells[1]:>8} "
            f"{cells[2]:>7} {cells[3]:>7} {cells[4]:>7}"
        )
    if "auto" in loc:
        print(f"layer auto: {loc['auto']['reason']}")
    _print_directions(m.get("directions", {}))
    print(f"metrics written to {args.out}")
    return 0


def _print_directions(section: dict[str, Any]) -> None:
    """One line per scored direction: its best layer and method, beside the best single unit."""
    rows = [
        (name, e)
        for group in ("attributes", "factors")
        for name, e in section.get(group, {}).items()
        if "best" in e
    ]
    if not rows:
        return
    print(
        f"{'direction':<22} {'auroc':>6} {'best layer':<18} {'method':<9} {'pointing':>8} "
        f"{'chance':>7} {'cell':>6} {'energy':>7} {'unit pt':>7} {'unit en':>7}"
    )
    for name, e in rows:
        b, u = e["best"], e.get("unit", {})
        print(
            f"{name:<22} {_fmt(e.get('auroc', e.get('r2'))):>6} {b['layer']:<18} "
            f"{b['method']:<9} {_fmt(b['pointing_game']):>8} {_fmt(b['chance']):>7} "
            f"{_fmt(b['cell_chance']):>6} {_fmt(b['energy_in_part']):>7} "
            f"{_fmt(u.get('pointing_game')):>7} {_fmt(u.get('energy_in_part')):>7}"
        )
