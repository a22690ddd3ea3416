"""A sweep of bad inputs over every command (issue #20.5): each command line must exit 2
with one stderr line ``latentcam <command>: error: ...`` (no traceback, nothing on stdout),
write nothing (no ``--out``, nothing new beside the inputs), and leave every input
byte-identical: the runs, the dataset, the checkpoint and the config file it was given.

The cases are grouped by kind (``KINDS``); docs/reliability.md gives the tally. Set
``LATENTCAM_RELIABILITY_TALLY=FOLDER`` to write each case's message to
``FOLDER/bad_input_sweep-<worker>.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

from latentcam.cli import build_parser, main


class Bad(NamedTuple):
    """A bad command line (placeholders in braces) and the kind of mistake."""

    kind: str
    argv: str


#: Kinds of bad input, in the order of the docs' table.
KINDS = ("overwrite", "nan", "inf", "negative", "zero", "huge", "range", "checkpoint")

#: Placeholders: {run} {cvae} copies of the tiny vae and cvae runs; {data} a folder of 32 px
#: images; {out} a path that must stay absent; {tmp} the folder holding all of them;
#: {nan_ckpt} the vae checkpoint with one NaN weight; {nan_yaml} a config with lr: .nan.
SWEEP: list[Bad] = [
    # an output that is an input, lies in one, contains one, or hits a run's own files
    Bad("overwrite", "evaluate {run} --out {run}/checkpoints/best.ckpt"),
    Bad("overwrite", "evaluate {run} --out {run}/config.yaml"),
    Bad("overwrite", "evaluate {run} --out {run}/metrics.json"),
    Bad("overwrite", "evaluate {run} --data {data} --out {data}/m.json"),
    Bad("overwrite", "report {run} --out {run}"),
    Bad("overwrite", "report {run} --out {run}/checkpoints"),
    Bad("overwrite", "reconstruct {run} --data {data} --out {data}"),
    Bad("overwrite", "train --config tiny --data {data} --out {data}"),
    Bad("overwrite", "train --config tiny --out {run}/checkpoints"),
    Bad("overwrite", "explain {run} --out {run}/logs"),
    Bad("overwrite", "explain {run} --out {tmp}"),
    Bad("overwrite", "traverse {run} --out {run}"),
    Bad("overwrite", "sample {run} --out {run}/checkpoints"),
    Bad("overwrite", "directions {run} --data {data} --out {data}/d"),
    Bad("overwrite", "synth --out {run}/checkpoints/faces --n 4 --size 32"),
    Bad("overwrite", "sweep --config tiny --out {run} --grid latent=4"),
    Bad("overwrite", "demo --out {run}/logs"),
    Bad("overwrite", "data info {data} --cache-dir {data}"),
    Bad("overwrite", "import --from python os:path --weights {run}/weights.pt --out {run}/imported"),
    # NaN
    Bad("nan", "train --config tiny --out {out} train.max_minutes=nan"),
    Bad("nan", "train --config tiny --out {out} --minutes nan"),
    Bad("nan", "train --config tiny --out {out} train.lr=nan"),
    Bad("nan", "train --config {nan_yaml} --out {out}"),
    Bad("nan", "train --config tiny --out {out} model.logvar_init=nan"),
    Bad("nan", "sweep --config tiny --out {out} --grid latent=4 train.beta=nan"),
    Bad("nan", "demo --out {out} --minutes nan"),
    Bad("nan", "sample {cvae} --out {out} --set Smiling=nan"),
    Bad("nan", "traverse {run} --out {out} --deltas nan"),
    # infinity
    Bad("inf", "demo --out {out} --minutes inf"),
    Bad("inf", "train --config tiny --out {out} --minutes inf"),
    Bad("inf", "train --config tiny --out {out} train.grad_clip=inf"),
    Bad("inf", "train --config tiny --out {out} train.lr=-inf"),
    Bad("inf", "sample {cvae} --out {out} --set Smiling=inf"),
    Bad("inf", "traverse {run} --out {out} --sigmas inf,1"),
    # negative where it makes no sense
    Bad("negative", "train --config tiny --out {out} --seed -5"),
    Bad("negative", "train --config tiny --out {out} train.weight_decay=-0.1"),
    Bad("negative", "train --config tiny --out {out} data.limit=-1"),
    Bad("negative", "sample {run} --out {out} --seed -1"),
    Bad("negative", "sample {cvae} --out {out} --set Smiling=-1"),
    Bad("negative", "synth --out {out} --seed -1"),
    Bad("negative", "data info {data} --seed -2"),
    Bad("negative", "demo --out {out} --minutes -3"),
    Bad("negative", "explain {run} --out {out} --units -1"),
    Bad("negative", "evaluate {run} --out {out}.json --n -4"),
    Bad("negative", "app {run} --port -1"),
    Bad("negative", "app {run} --gallery -1"),
    # zero where it makes no sense
    Bad("zero", "sample {run} --out {out} --n 0"),
    Bad("zero", "reconstruct {run} --data {data} --out {out} --n 0"),
    Bad("zero", "explain {run} --out {out} --top 0"),
    Bad("zero", "traverse {run} --out {out} --n 0"),
    Bad("zero", "evaluate {run} --out {out}.json --max-map-images 0"),
    Bad("zero", "report {run} --out {out} --eval-n 0"),
    Bad("zero", "directions {run} --out {out} --k 0"),
    Bad("zero", "sweep --config tiny --out {out} --grid latent=4 --eval-n 0"),
    Bad("zero", "demo --out {out} --minutes 0"),
    Bad("zero", "app {run} --top 0"),
    Bad("zero", "train --config tiny --out {out} train.lr=0"),
    Bad("zero", "synth --out {out} --n 0"),
    # sizes that would not fit, or values past any use
    Bad("huge", "sample {run} --out {out} --n 100000000"),
    Bad("huge", "synth --out {out} --n 100000000"),
    Bad("huge", "explain {run} --out {out} --units 0-300000000"),
    Bad("huge", "traverse {run} --out {out} --units 0-300000000"),
    Bad("huge", "demo --out {out} --n 100000000"),
    Bad("huge", "train --config tiny --out {out} --seed 99999999999"),
    Bad("huge", "train --config tiny --out {out} train.max_minutes=1e12"),
    Bad("huge", "data info {data} --size 100000"),
    Bad("huge", "synth --out {out} --size 5000"),
    # outside a range: ports, units, fractions, attribute values
    Bad("range", "app {run} --port 70000"),
    Bad("range", "app {run} --port 65536"),
    Bad("range", "explain {run} --out {out} --units 5-2"),
    Bad("range", "explain {run} --out {out} --units 8"),
    Bad("range", "train --config tiny --out {out} train.ema_decay=1.5"),
    Bad("range", "train --config tiny --out {out} data.val_fraction=1.2"),
    Bad("range", "train --config tiny --out {out} train.epochs=-5"),
    Bad("range", "sample {cvae} --out {out} --set Smiling=2"),
    # a checkpoint whose weights hold NaN
    Bad("checkpoint", "sample {nan_ckpt} --out {out}"),
    Bad("checkpoint", "explain {nan_ckpt} --out {out}"),
    Bad("checkpoint", "evaluate {nan_ckpt} --out {out}.json"),
    Bad("checkpoint", "app {nan_ckpt}"),
    Bad("checkpoint", "train --config tiny --out {out} --resume {nan_ckpt}"),
]


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (folders as "dir")."""
    return {
        str(p.relative_to(root)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def inputs(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The inputs of every case, in one folder (copies: the session's runs stay apart)."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("sweep")
    run = Path(shutil.copytree(runs["vae"], tmp / "run"))
    cvae = Path(shutil.copytree(runs["cvae"], tmp / "cvae"))
    data = tmp / "data"
    data.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (40 * i, 90, 200 - 40 * i)).save(data / f"img{i}.png")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name] * float("nan")
    torch.save(checkpoint, tmp / "nan.ckpt")
    (tmp / "nan.yaml").write_text("train:\n  lr: .nan\n")
    return {
        "run": run,
        "cvae": cvae,
        "data": data,
        "nan_ckpt": tmp / "nan.ckpt",
        "nan_yaml": tmp / "nan.yaml",
        "tmp": tmp,
        "out": tmp / "out",
    }


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def _record(case: Bad, line: str, inputs: dict[str, Path]) -> None:
    folder = os.environ.get("LATENTCAM_RELIABILITY_TALLY")
    if not folder:
        return
    for name, path in sorted(inputs.items(), key=lambda item: -len(str(item[1]))):
        line = line.replace(str(path), "{" + name + "}")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / f"bad_input_sweep-{worker}.jsonl", "a") as fh:
        fh.write(json.dumps({"kind": case.kind, "argv": case.argv, "message": line}) + "\n")


@pytest.mark.parametrize("case", SWEEP, ids=[f"{c.kind}:{c.argv}" for c in SWEEP])
def test_bad_input(
    case: Bad,
    inputs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    _session_cache: Path,
) -> None:
    before = snapshot(inputs["tmp"])
    argv = [w.format(**{k: str(v) for k, v in inputs.items()}) for w in case.argv.split()]
    if argv[0] in ("train", "sweep"):
        argv += ["--no-progress", f"data.cache_dir={_session_cache}", "data.synth_n=96"]
    assert run_cli(argv) == 2, argv
    captured = capsys.readouterr()
    lines = [s for s in captured.err.splitlines() if s.strip() and s[:5] != "INFO:"]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert re.match(rf"latentcam {argv[0]}( info)?: error: ", lines[0]), lines[0]
    assert captured.out == ""
    assert snapshot(inputs["tmp"]) == before  # inputs byte-identical, nothing new
    _record(case, lines[0], inputs)


def test_the_sweep_covers_every_command_and_kind() -> None:
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {c.argv.split()[0] for c in SWEEP} == commands
    tally: Counter[Any] = Counter(c.kind for c in SWEEP)
    assert set(tally) == set(KINDS) and len(SWEEP) >= 60
    assert len({c.argv for c in SWEEP}) == len(SWEEP)  # no case twice
