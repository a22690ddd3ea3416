"""Kill test (issue #7.1): SIGKILL ``latentcam train`` during training and during a
checkpoint save, then ``--resume``; no work is lost beyond the steps since the last
completed checkpoint, and no checkpoint is ever left corrupt.

The run is the tiny recipe on 64 synthetic faces (3 training steps per epoch, a validation
and a checkpoint at the end of each epoch: global steps 3, 6, 9, 12). ``faulty_train.py``
is ``latentcam`` with test-only hooks: it marks the start of every training step in a
folder, and can hang half-way through the first checkpoint save of a session. The test
polls for those marks (never sleeping blindly) and kills the process at known points.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from latentcam.checkpoint import read_checkpoint
from latentcam.cli import main
from latentcam.errors import CheckpointError

HELPER = Path(__file__).with_name("faulty_train.py")
STEPS_PER_EPOCH = 3  # 64 faces: 52 train images in batches of 16, the last one dropped
MAX_STEPS = 12


def _step(path: Path) -> int:
    return int(read_checkpoint(path)["global_step"])


@pytest.fixture
def launch() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``faulty_train.py`` with arguments, a marks folder, a log file and hook
    variables; every process still alive when the test ends is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], marks: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
        marks.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "FAULT_MARKS": str(marks), **env}
        with open(log, "wb") as out:  # the child keeps its own handle
            proc = subprocess.Popen(
                [sys.executable, str(HELPER), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _wait_for(
    what: str,
    ready: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    log: Path,
    limit: float = 90,
) -> None:
    """Poll ``ready`` every 20 ms until it holds; fail if the process ends first."""
    deadline = time.monotonic() + limit
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"train exited ({proc.returncode}) before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {limit} s:\n{log.read_text()}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _checkpoints_are_whole(folder: Path) -> dict[str, int]:
    """Every ``*.ckpt`` in ``folder`` reads back (no CheckpointError): name -> global step."""
    return {p.name: _step(p) for p in sorted(folder.glob("*.ckpt"))}


def test_sigkill_during_training_and_during_a_save_then_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], launch: Callable[..., Any]
) -> None:
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    common = [
        "--config",
        "tiny",
        "--max-steps",
        str(MAX_STEPS),
        "--no-progress",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    train = ["train", "--out", str(run), *common]

    # 1. kill inside a training step, one step after the first checkpoint (step 3)
    marks = tmp_path / "marks1"
    proc = launch(train, marks, tmp_path / "1.log", FAULT_STEP_SLEEP="0.2")
    _wait_for("step 4", lambda: (marks / "step-4").exists(), proc, tmp_path / "1.log")
    _kill(proc)
    assert _checkpoints_are_whole(ckpts) == {"best.ckpt": 3, "last.ckpt": 3}
    assert not (run / "metrics.json").exists()  # an unfinished run ...
    assert main(train) == 2  # ... is not overwritten by a new run without --resume
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("latentcam train: error: ")
    assert "checkpoints of an unfinished run; use --overwrite or --resume" in err

    # 2. resume, and kill half-way through the first save of the session (step 6)
    marks = tmp_path / "marks2"
    resume = [*train, "--resume", "last"]
    proc = launch(resume, marks, tmp_path / "2.log", FAULT_HANG_IN_SAVE="1")
    _wait_for("a save", lambda: (marks / "saving.json").exists(), proc, tmp_path / "2.log")
    saving = json.loads((marks / "saving.json").read_text())
    _kill(proc)
    assert saving["step"] == 2 * STEPS_PER_EPOCH
    partial = Path(saving["tmp"])
    assert partial.parent == ckpts and 0 < partial.stat().st_size < saving["bytes"]
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(partial)  # what a save without the rename would have left
    assert _checkpoints_are_whole(ckpts) == {"best.ckpt": 3, "last.ckpt": 3}
    assert sorted(p.name for p in marks.glob("step-*")) == ["step-3", "step-4", "step-5"]

    # 3. resume again: from step 3, the last completed checkpoint, to the end
    proc = launch(resume, tmp_path / "marks3", tmp_path / "3.log")
    assert proc.wait(timeout=120) == 0, (tmp_path / "3.log").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["start_step"] == 3 and metrics["global_step"] == MAX_STEPS
    steps_run = sorted(int(p.name[5:]) for p in (tmp_path / "marks3").glob("step-*"))
    assert steps_run == list(range(3, MAX_STEPS))  # steps 3..11, nothing skipped or repeated
    whole = _checkpoints_are_whole(ckpts)
    assert whole["last.ckpt"] == MAX_STEPS and whole["best.ckpt"] in (3, 6, 9, 12)
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]  # no temp left

    # 4. a finished run is refused too, unless --overwrite
    assert main(train) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a finished run" in err
    assert json.loads((run / "metrics.json").read_text()) == metrics  # untouched

    # 5. the kills cost time only: an uninterrupted run ends with the same numbers
    straight = tmp_path / "straight"
    assert main(["train", "--out", str(straight), *common]) == 0
    expected = json.loads((straight / "metrics.json").read_text())
    for key in ("val/loss", "val/mse", "val/kl", "kl_per_unit", "best_val_loss"):
        assert metrics[key] == expected[key], key
