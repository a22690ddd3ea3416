import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentcam import io as io_module
from latentcam.errors import InputError, OutputError
from latentcam.io import atomic_write, check_free_space, check_output, ensure_dir, write_json


def test_atomic_write_leaves_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("{half")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temp left


def test_ensure_dir_rejects_a_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        ensure_dir(f)


def test_ensure_dir_cannot_create_under_a_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(InputError, match="cannot create"):
        ensure_dir(f / "sub")


# ----------------------------------------------------------------------------- check_output


def _run_folder(root: Path) -> Path:
    """A folder that looks like a finished run (config.yaml, checkpoints/, metrics.json)."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (root / "config.yaml").write_text("model: {}\n")
    (root / "metrics.json").write_text("{}\n")
    return root


@pytest.mark.parametrize(
    ("relative", "says"),
    [
        ("run", "is the run folder"),
        ("run/checkpoints", "lies in"),
        ("run/checkpoints/best.ckpt", "which holds the run's checkpoints"),
        ("run/checkpoints/new.json", "which holds the run's checkpoints"),
        ("run/logs/version_0", "which holds the run's logs"),
        ("run/config.yaml", "is the run's own config.yaml"),
        ("run/metrics.json", "is the run's own metrics.json"),
    ],
)
def test_check_output_refuses_a_runs_own_files(tmp_path: Path, relative: str, says: str) -> None:
    _run_folder(tmp_path / "run")
    with pytest.raises(InputError, match=re.escape(says)) as caught:
        check_output(tmp_path / relative)
    assert "\n" not in str(caught.value)


def test_check_output_allows_a_folder_of_its_own_inside_a_run(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run")
    for relative in ("explain", "report", "evaluate.json", "sub/deeper"):
        assert check_output(run / relative, [run]) == run / relative
    assert check_output(run, [tmp_path / "data"], owns_run=True) == run  # training into it


def test_check_output_refuses_inputs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    cases = [
        (data, [data], "is the input folder"),
        (data / "out", [data], "lies inside the input folder"),
        (tmp_path, [data], "contains the input folder"),
        (notes, [notes], "is the input file"),
    ]
    for out, inputs, says in cases:
        with pytest.raises(InputError, match=says):
            check_output(out, inputs)
    assert check_output(tmp_path / "elsewhere", [data, notes, None, "synth"])


def test_check_output_resolves_symlinks(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run")
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "alias").symlink_to(run)
    (tmp_path / "data-link").symlink_to(data)
    with pytest.raises(InputError, match="is the run's own config.yaml"):
        check_output(tmp_path / "alias" / "config.yaml")
    with pytest.raises(InputError, match="is the input folder"):
        check_output(tmp_path / "data-link", [data])
    with pytest.raises(InputError, match="lies inside"):
        check_output(data / "x", [tmp_path / "data-link"])


# ----------------------------------------------------------------------------- write errors

WRITE_ERRNOS = [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT]


def _raise(code: int) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("code", WRITE_ERRNOS)
def test_a_failed_rename_is_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    monkeypatch.setattr(io_module.os, "replace", _raise(code))
    with pytest.raises(OutputError, match=f"cannot write {re.escape(str(target))}: ") as caught:
        write_json(target, {"a": 2})
    assert "\n" not in str(caught.value)
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # the temp is removed


@pytest.mark.parametrize("code", WRITE_ERRNOS)
def test_a_failed_open_or_write_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setattr(io_module, "open", _raise(code), raising=False)
    with pytest.raises(OutputError, match=r"cannot write .*out\.txt: "):
        with atomic_write(tmp_path / "out.txt") as fh:
            fh.write("x")
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_are_not_disguised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io_module.os, "replace", _raise(errno.EIO))
    with pytest.raises(OSError) as caught:
        write_json(tmp_path / "x.json", {})
    assert not isinstance(caught.value, OutputError) and caught.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


def test_png_and_gif_writes_fail_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from latentcam.figures import save_png

    monkeypatch.setattr(Image.Image, "save", _raise(errno.ENOSPC))
    with pytest.raises(OutputError, match=r"grid\.png: the disk is full"):
        save_png(tmp_path / "grid.png", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_check_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_free_space(tmp_path, 1, "one byte", "never")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(io_module.shutil, "disk_usage", lambda p: usage._replace(free=1500))
    with pytest.raises(OutputError, match=r"the cache needs about 2\.0 KB in .*, but only 1\.5 KB"):
        check_free_space(tmp_path / "not" / "yet", 2000, "the cache", "free some")
