import json
from pathlib import Path

import pytest

from latentcam.errors import InputError
from latentcam.io import atomic_write, ensure_dir, write_json


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
