"""Outputs never overwrite inputs (issue #20.1): every command that writes refuses an
``--out`` that is, lies in or contains one of its inputs, or that lands on a run's own
files, with exit 2 and one line, before it writes anything; the inputs stay byte-identical.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from latentcam.cli import main


def snapshot(*roots: Path) -> dict[str, str]:
    """Path -> sha256 of every file under ``roots``."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


@pytest.fixture
def run(runs: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the tiny vae run (the session's run is never written to)."""
    return Path(shutil.copytree(runs["vae"], tmp_path / "run"))


@pytest.fixture
def data(make_data: object) -> Path:
    """A plain folder of four 32 px images (a dataset the vae run fits)."""
    return make_data.folder(sizes=((32, 32),) * 4).root  # type: ignore[attr-defined]


#: Bad calls: argv with {run} and {data}; a fragment of the one-line message.
CASES = [
    ("evaluate {run} --out {run}/checkpoints/best.ckpt", "which holds the run's checkpoints"),
    ("evaluate {run} --out {run}/checkpoints/new.json", "which holds the run's checkpoints"),
    ("evaluate {run} --out {run}/config.yaml", "is the run's own config.yaml"),
    ("evaluate {run} --out {run}/metrics.json", "is the run's own metrics.json"),
    ("evaluate {run}/checkpoints/best.ckpt --out {run}/checkpoints/best.ckpt", "checkpoints"),
    ("report {run} --out {run}", "is the run folder"),
    ("report {run} --out {run}/logs", "which holds the run's logs"),
    ("reconstruct {run} --data {data} --out {data}", "is the input folder"),
    ("reconstruct {run} --data {data} --out {data}/recon", "lies inside the input folder"),
    ("reconstruct {run} --data {data} --out {tmp}", "contains the run"),
    ("train --config tiny --data {data} --out {data}", "is the input folder"),
    ("train --config tiny --data {data} --out {data}/run", "lies inside the input folder"),
    ("train --config tiny --data {data} --out {run}/checkpoints", "holds the run's checkpoints"),
    ("explain {run} --out {run}", "is the run folder"),
    ("explain {run} --data {data} --out {data}", "is the input folder"),
    ("traverse {run} --out {run}/checkpoints", "holds the run's checkpoints"),
    ("sample {run} --out {run}", "is the run folder"),
    ("sample {run} --out {run}/checkpoints", "holds the run's checkpoints"),
    ("directions {run} --data {data} --out {data}", "is the input folder"),
    ("synth --out {run}/logs/faces --n 4 --size 32", "holds the run's logs"),
    ("sweep --config tiny --data {data} --out {data} --grid latent=4", "is the input folder"),
    ("sweep --config tiny --out {run} --grid latent=4", "is the run folder"),
    ("demo --out {run} --minutes 0.01 --n 50", "is the run folder"),
    ("data info {data} --cache-dir {data}", "is the input folder"),
]


@pytest.mark.parametrize(("argv", "says"), CASES, ids=[c[0].replace(" ", "_") for c in CASES])
def test_output_that_would_overwrite_an_input_is_refused(
    argv: str,
    says: str,
    run: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(run, data)
    words = [w.format(run=run, data=data, tmp=tmp_path) for w in argv.split()]
    if words[0] in ("train", "sweep"):
        words.append("--no-progress")
    assert run_cli(words) == 2, words
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert re.match(rf"latentcam {words[0]}( info)?: error: --(out|cache-dir) ", lines[0])
    assert says in lines[0], lines[0]
    assert snapshot(run, data) == before  # byte-identical, nothing added


def test_symlinked_output_is_resolved(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run)
    (tmp_path / "alias").symlink_to(run / "checkpoints")
    assert run_cli(["evaluate", str(run), "--out", str(tmp_path / "alias" / "best.ckpt")]) == 2
    assert "holds the run's checkpoints" in capsys.readouterr().err
    assert snapshot(run) == before


def test_report_without_out_writes_a_folder_of_its_own(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run)
    assert main(["report", str(run), "--n", "2", "--eval-n", "8", "--layer", "default"]) == 0
    assert (run / "report" / "index.html").is_file()
    assert (run / "report" / "metrics.json").is_file()
    assert {k: v for k, v in snapshot(run).items() if "/report/" not in k} == before
    assert str((run / "report" / "index.html").resolve()) in capsys.readouterr().out
