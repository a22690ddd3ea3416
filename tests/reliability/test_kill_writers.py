"""A kill leaves nothing behind (issue #20.3): SIGKILL a writer half-way, then run the same
kind of writer again; the temporaries the killed process left are gone afterwards.

Each writer names its temporaries ``.NAME.<pid>.<random>[.ext].tmp``; the next writer in
the folder removes those whose process is dead and that are older than
``latentcam.io.STALE_AFTER_S`` (set to 0 here, so the test does not wait). Cases: a file
written through ``atomic_write``, ``latentcam synth``'s folder, a cache build (slowed down
by ``slow_writer.py`` so that the kill lands inside it) and ``latentcam report``'s folder.
Training's own kill test is test_kill.py.
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

import pytest

from latentcam import io as io_module
from latentcam.cli import main
from latentcam.io import atomic_write, write_json

HELPER = Path(__file__).with_name("slow_writer.py")


def temps(folder: Path) -> list[Path]:
    """Temporaries of latentcam's writers directly in ``folder``."""
    return sorted(p for p in folder.iterdir() if io_module._TEMP_RE.match(p.name))


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``slow_writer.py ARGS`` (output to a log); killed at the end if still alive."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **env: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"log-{len(started)}.txt", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(HELPER), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": "1", **env},
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], limit: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (polled every 20 ms)."""
    deadline = time.monotonic() + limit
    while not ready():
        assert proc.poll() is None, f"the writer ended ({proc.returncode}) before the kill"
        assert time.monotonic() < deadline, "the writer never got there"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.fixture
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io_module, "STALE_AFTER_S", 0.0)


def test_atomic_write_killed(
    tmp_path: Path, launch: Callable[..., subprocess.Popen[bytes]], no_wait: None
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    proc = launch("--atomic", str(folder / "result.json"))
    kill_when(proc, lambda: bool(temps(folder)))
    (left,) = temps(folder)
    assert left.name.startswith(f".result.json.{proc.pid}.") and left.name.endswith(".json.tmp")
    write_json(folder / "other.json", {"a": 1})  # the next write in the folder sweeps it
    assert sorted(p.name for p in folder.iterdir()) == ["other.json"]


def test_stale_temps_of_live_or_recent_writers_are_kept(tmp_path: Path) -> None:
    live = tmp_path / f".a.json.{os.getpid()}.abcd1234.json.tmp"
    dead_recent = tmp_path / ".b.json.999999999.abcd1234.json.tmp"
    dead_old = tmp_path / ".c.999999999.abcd1234.tmp"
    mine = tmp_path / ".not-ours.tmp"
    for path in (live, dead_recent, mine):
        path.write_text("x")
    dead_old.mkdir()
    (dead_old / "sub").mkdir()
    os.utime(dead_old, (time.time() - 3600,) * 2)
    os.utime(dead_old / "sub", (time.time() - 3600,) * 2)
    assert io_module.remove_stale_temps(tmp_path) == [dead_old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, dead_recent, mine)
    )


def test_synth_killed_then_run_again(
    tmp_path: Path, launch: Callable[..., subprocess.Popen[bytes]], no_wait: None
) -> None:
    out = tmp_path / "faces"
    proc = launch("synth", "--out", str(out), "--n", "5000", "--size", "64")

    def some_faces() -> bool:
        return any(len(list(t.glob("CelebA-HQ-img/*.jpg"))) >= 10 for t in temps(tmp_path))

    kill_when(proc, some_faces)
    assert not out.exists() and [t.name.split(".")[2] for t in temps(tmp_path)] == [str(proc.pid)]
    assert main(["synth", "--out", str(out), "--n", "3", "--size", "32"]) == 0
    assert temps(tmp_path) == [] and (out / "synthetic-meta.json").is_file()


def test_cache_build_killed_then_run_again(
    make_data: object,
    tmp_path: Path,
    launch: Callable[..., subprocess.Popen[bytes]],
    no_wait: None,
) -> None:
    root = make_data.celebamask_hq(n=40).root  # type: ignore[attr-defined]
    cache = tmp_path / "cache"
    args = ["data", "info", str(root), "--size", "32", "--cache-dir", str(cache)]
    proc = launch(*args, SLOW_DECODE="0.2")
    kill_when(proc, lambda: cache.is_dir() and any(p.is_dir() for p in temps(cache)))
    assert [p for p in cache.iterdir() if p.is_dir()] == temps(cache)  # no cache, one temp
    assert main([*args, "--json"]) == 0
    assert temps(cache) == []
    (built,) = [p for p in cache.iterdir() if p.is_dir()]
    assert json.loads((built / "meta.json").read_text())["num_images"] == 40


def test_report_killed_then_run_again(
    runs: dict[str, Path],
    tmp_path: Path,
    launch: Callable[..., subprocess.Popen[bytes]],
    no_wait: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "report"
    args = ["report", str(runs["vae"]), "--out", str(out), "--n", "2", "--eval-n", "16"]
    proc = launch(*args, "--layer", "default")
    kill_when(proc, lambda: any((t / "metrics.json").exists() for t in temps(tmp_path)))
    assert not out.exists() and len(temps(tmp_path)) == 1  # nothing half-written in place
    assert main([*args, "--layer", "default"]) == 0
    assert temps(tmp_path) == []
    assert {".latentcam-report", "index.html"} <= {p.name for p in out.iterdir()}
    assert "</html>" in (out / "index.html").read_text()


def test_report_replaces_an_earlier_report_whole(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    args = ["report", str(runs["vae"]), "--out", str(out), "--n", "2", "--eval-n", "8"]
    assert main([*args, "--layer", "default"]) == 0
    (out / "old-figure.png").write_bytes(b"from the first report")
    assert main([*args, "--layer", "default"]) == 0
    assert not (out / "old-figure.png").exists() and temps(tmp_path) == []
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["report", str(runs["vae"]), "--out", str(other)]) == 2
    assert "holds files that are not a latentcam report" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"


def test_atomic_write_sweeps_each_folder_once_per_process(tmp_path: Path, no_wait: None) -> None:
    stale = tmp_path / ".x.json.999999999.abcd1234.json.tmp"
    with atomic_write(tmp_path / "a.json") as fh:
        fh.write("{}")
    stale.write_text("left later")
    write_json(tmp_path / "b.json", {})
    assert stale.exists()  # swept once, at the first write
