import json
import re
from pathlib import Path

import pytest

from latentcam.errors import InputError
from latentcam.io import atomic_write, check_output, ensure_dir, write_json


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
