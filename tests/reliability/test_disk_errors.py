"""I/O errors are clean (issue #20.2): a full, read-only or forbidden disk under any write
of a command gives exit 2 and one line naming the file, and leaves no temporary file; the
data cache checks its free space before it maps a file (no SIGBUS).

The failures are simulated: ``os.replace``, Pillow's ``save``, ``torch.save`` or
``shutil.disk_usage`` are replaced for one command.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from latentcam import io as io_module
from latentcam.cli import main
from latentcam.data.synthetic import write_synthetic
from latentcam.errors import OutputError


def _raise(code: int) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    captured = capsys.readouterr()
    lines = [  # without progress bars and the log lines of a training run
        s for s in captured.err.splitlines() if s.strip() and "%|" not in s and s[:5] != "INFO:"
    ]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"latentcam {command}: error: "), lines[0]
    assert "Traceback" not in captured.err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders (``.NAME...tmp``) anywhere under ``folder``."""
    return [str(p) for p in folder.rglob(".*") if p.name.endswith(".tmp") or ".tmp-" in p.name]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT])
def test_sample_png_on_a_bad_disk(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
) -> None:
    monkeypatch.setattr(Image.Image, "save", _raise(code))
    out = tmp_path / "samples"
    assert main(["sample", str(runs["vae"]), "--out", str(out), "--n", "2"]) == 2
    line = one_error_line(capsys, "sample")
    assert f"cannot write {out / 'samples.png'}: " in line
    assert list(out.iterdir()) == []


def test_evaluate_json_on_a_full_disk(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(io_module.os, "replace", _raise(errno.ENOSPC))
    out = tmp_path / "m.json"
    argv = ["evaluate", str(runs["vae"]), "--out", str(out), "--n", "4", "--no-sanity"]
    assert main([*argv, "--max-map-images", "2", "--no-directions"]) == 2
    assert f"cannot write {out}: the disk is full" in one_error_line(capsys, "evaluate")
    assert list(tmp_path.iterdir()) == []


def test_traverse_gif_on_a_full_disk(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    save = Image.Image.save

    def gif_fails(self: Image.Image, fp: Any, format: str | None = None, **kw: Any) -> None:
        if format == "GIF":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(self, fp, format=format, **kw)

    monkeypatch.setattr(Image.Image, "save", gif_fails)
    out = tmp_path / "trav"
    assert main(["traverse", str(runs["vae"]), "--out", str(out), "--units", "0", "--n", "1"]) == 2
    assert ".gif: the disk is full" in one_error_line(capsys, "traverse")
    assert leftovers(out) == []


def test_train_checkpoint_save_on_a_full_disk(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    _session_cache: Path,
) -> None:
    monkeypatch.setattr(torch, "save", _raise(errno.ENOSPC))
    run = tmp_path / "run"
    argv = ["train", "--config", "tiny", "--out", str(run), "--max-steps", "2", "--no-progress"]
    assert main([*argv, f"data.cache_dir={_session_cache}", "data.synth_n=96"]) == 2
    line = one_error_line(capsys, "train")
    assert f"cannot write {run / 'checkpoints'}" in line and "the disk is full" in line
    assert leftovers(run) == [] and not list((run / "checkpoints").glob("*.ckpt"))


def test_synth_on_a_full_disk_removes_its_temp_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    save = Image.Image.save

    def fills_up(self: Image.Image, *args: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(self, *args, **kw)

    monkeypatch.setattr(Image.Image, "save", fills_up)
    out = tmp_path / "faces"
    assert main(["synth", "--out", str(out), "--n", "8", "--size", "32"]) == 2
    assert "the disk is full" in one_error_line(capsys, "synth")
    assert list(tmp_path.iterdir()) == []


def test_synth_checks_free_space_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(io_module.shutil, "disk_usage", lambda p: usage._replace(free=10**6))
    assert main(["synth", "--out", str(tmp_path / "faces"), "--n", "1000", "--size", "64"]) == 2
    line = one_error_line(capsys, "synth")
    assert "1000 faces at 64 px need about 63.0 MB on disk" in line and "only 1.0 MB" in line
    with pytest.raises(OutputError, match="1000 synthetic faces at 64 px needs about 63.0 MB"):
        write_synthetic(tmp_path / "faces", 1000, 64, 0, progress=False)  # the API checks too
    assert list(tmp_path.iterdir()) == []


def test_cache_checks_free_space_before_mapping(
    make_data: Any,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = make_data.celebamask_hq(n=3).root
    usage = shutil.disk_usage(root)
    monkeypatch.setattr(io_module.shutil, "disk_usage", lambda p: usage._replace(free=100))
    argv = ["data", "info", str(root), "--size", "32", "--cache-dir", str(cache_dir)]
    assert main(argv) == 2
    line = one_error_line(capsys, "data")
    assert f"the cache of {root} (3 items at 32 px) needs about 12.3 KB" in line
    assert "100 B is free" in line and "--cache-dir" in line
    assert leftovers(cache_dir) == [] and not [p for p in cache_dir.iterdir() if p.is_dir()]


def test_cache_file_that_cannot_be_allocated(
    make_data: Any,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills between the check and the map: fallocate fails, not the map."""
    root = make_data.celebamask_hq(n=3).root
    monkeypatch.setattr(io_module.os, "posix_fallocate", _raise(errno.ENOSPC))
    argv = ["data", "info", str(root), "--size", "32", "--cache-dir", str(cache_dir)]
    assert main(argv) == 2
    assert "images.npy: the disk is full" in one_error_line(capsys, "data")
    assert leftovers(cache_dir) == [] and not [p for p in cache_dir.iterdir() if p.is_dir()]
