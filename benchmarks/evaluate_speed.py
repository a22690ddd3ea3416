"""Time ``latentcam evaluate`` stage by stage, the landed code beside a baseline commit.

Each stage of :func:`latentcam.evaluate.evaluate` (units/KL, effect maps, decoder maps, the
layer x method comparison, the decoder section, ranking probes, disentanglement,
directions, sanity, ...) is timed by evaluate itself (``result["seconds_by_stage"]``).
With ``--baseline REF`` the same evaluation also runs on the code of commit REF (its
``src/`` exported with ``git archive`` into a temporary folder), in a subprocess like the
current code, one after the other in this run: other helpers' jobs make absolute times
noisy, so compare the ratios of one run. REF must have ``seconds_by_stage`` (commits after
the timing hook landed); for older ones only the total is known.

Issue 19's target work is 1000 faces at 64 px, 128 map images, all layers x 3 methods,
fusion and auto:

    python benchmarks/evaluate_speed.py /work/runs/vae64 --n 1000 --max-map-images 128 \\
        --layer all fusion auto --methods gradcam layercam hirescam --baseline main

The last line printed is a JSON object: ``seconds_total``, ``seconds_by_stage`` (the
current code), and with a baseline ``baseline`` (the same two keys) and ``speedup`` (total
and per stage, baseline / current). With ``--repeat R`` each code runs R times, the two
interleaved so that a change of load hits both; the seconds are medians over the R runs
(``runs`` keeps every run's timings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder or checkpoint")
    parser.add_argument("--data", help="dataset (default: the run's own)")
    parser.add_argument("--n", type=int, default=256, help="images evaluated")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-map-images", type=int, default=64)
    parser.add_argument("--layer", nargs="+", dest="layers", default=["all", "fusion", "auto"])
    parser.add_argument("--methods", nargs="+", default=["gradcam", "layercam", "hirescam"])
    parser.add_argument("--no-sanity", action="store_true")
    parser.add_argument("--no-directions", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: as is)")
    parser.add_argument("--baseline", metavar="REF", help="git commit to time beside this code")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each code, interleaved (baseline, current, baseline, ...); medians",
    )
    parser.add_argument("--out", help="also write the JSON of the current code's metrics here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate once in this process with the ``latentcam`` on ``sys.path``: the timings."""
    import torch

    from latentcam.checkpoint import load_run
    from latentcam.evaluate import evaluate, jsonable
    from latentcam.runs import open_run_data

    if args.threads:
        torch.set_num_threads(args.threads)
    batch = open_run_data(load_run(args.run), args.data, n=args.n, split=args.split, progress=False)
    start = time.perf_counter()
    metrics = evaluate(
        batch,
        layers=args.layers,
        methods=args.methods,
        max_map_images=args.max_map_images,
        sanity=not args.no_sanity,
        directions=False if args.no_directions else None,
        progress=False,
    )
    total = time.perf_counter() - start
    if args.out:
        Path(args.out).write_text(json.dumps(jsonable(metrics), indent=1))
    return {
        "seconds_total": round(total, 3),
        "seconds_by_stage": dict(metrics.get("seconds_by_stage", {})),
    }


def _child_argv(args: argparse.Namespace, out: str | None) -> list[str]:
    argv = [args.run, "--n", str(args.n), "--split", args.split]
    argv += ["--max-map-images", str(args.max_map_images), "--threads", str(args.threads)]
    argv += ["--layer", *args.layers, "--methods", *args.methods]
    argv += ["--data", args.data] if args.data else []
    argv += ["--no-sanity"] if args.no_sanity else []
    argv += ["--no-directions"] if args.no_directions else []
    argv += ["--out", out] if out else []
    return [sys.executable, str(Path(__file__).resolve()), *argv, "--child"]


def run_child(args: argparse.Namespace, src: Path, out: str | None) -> dict[str, Any]:
    """:func:`measure` in a subprocess whose ``latentcam`` is the one under ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(
        _child_argv(args, out), env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"evaluate with {src} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_src(ref: str, into: Path) -> Path:
    """``src/`` of commit ``ref`` extracted under ``into``; returns the src folder."""
    archive = into / "src.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def median_timings(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds, total and per stage, over runs of the same code."""
    stages = list(dict.fromkeys(k for r in runs for k in r["seconds_by_stage"]))
    return {
        "seconds_total": round(statistics.median(r["seconds_total"] for r in runs), 3),
        "seconds_by_stage": {
            k: round(statistics.median(r["seconds_by_stage"][k] for r in runs), 3)
            for k in stages
            if all(k in r["seconds_by_stage"] for r in runs)
        },
    }


def speedup(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """baseline / current seconds, total and per stage present in both."""

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b > 0 else None

    stages = {
        k: ratio(v, after["seconds_by_stage"][k])
        for k, v in before["seconds_by_stage"].items()
        if k in after["seconds_by_stage"]
    }
    return {
        "seconds_total": ratio(before["seconds_total"], after["seconds_total"]),
        "by_stage": stages,
    }


def table(after: dict[str, Any], before: dict[str, Any] | None) -> str:
    """A Markdown table: stage, seconds before and after, and their ratio."""
    stages = list(after["seconds_by_stage"])
    if before is not None:
        stages += [k for k in before["seconds_by_stage"] if k not in stages]
    lines = ["| stage | before s | after s | before / after |", "|---|---:|---:|---:|"]

    def cell(d: dict[str, Any] | None, k: str) -> str:
        v = None if d is None else d["seconds_by_stage"].get(k)
        return "-" if v is None else f"{v:.2f}"

    for k in [*stages, "total"]:
        if k == "total":
            b = None if before is None else before["seconds_total"]
            a = after["seconds_total"]
            cells = ("-" if b is None else f"{b:.2f}", f"{a:.2f}")
        else:
            b = None if before is None else before["seconds_by_stage"].get(k)
            a = after["seconds_by_stage"].get(k)
            cells = (cell(before, k), cell(after, k))
        r = f"{b / a:.1f}x" if b is not None and a else "-"
        lines.append(f"| {k} | {cells[0]} | {cells[1]} | {r} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child:
        timings = measure(args)
        print(json.dumps(timings))
        return timings
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be >= 1, got {args.repeat}")
    before = None
    if args.baseline:
        befores, afters = [], []
        with tempfile.TemporaryDirectory(prefix="evaluate_speed_") as tmp:
            src = export_src(args.baseline, Path(tmp))
            for r in range(args.repeat):
                befores.append(run_child(args, src, None))
                print(f"run {r + 1} baseline: {json.dumps(befores[-1])}", file=sys.stderr)
                afters.append(run_child(args, REPO / "src", args.out))
                print(f"run {r + 1} current: {json.dumps(afters[-1])}", file=sys.stderr)
        before, after = median_timings(befores), median_timings(afters)
    else:
        afters = [measure(args) for _ in range(args.repeat)]
        after = median_timings(afters)
    print(table(after, before))
    summary: dict[str, Any] = dict(after)
    if before is not None:
        summary.update(baseline=before, speedup=speedup(before, after))
    if args.repeat > 1:
        summary["runs"] = {"current": afters, **({"baseline": befores} if args.baseline else {})}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
