"""Annotation files as other tools write them, and links that lead nowhere (issue #20.5).

An attribute file saved by a Windows editor (UTF-8 with a byte-order mark, UTF-16, CRLF or
CR line ends) loads with exactly the attributes written; one that cannot be read as text,
or whose count on line 1 does not match its rows, is one DataError naming the file and the
fix. A symbolic link among the images that leads nowhere (a loop, a missing target) is
named, or skipped with ``skip_bad``; a cache made before the link appeared is not reused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentcam.data.dataset import load_face_data
from latentcam.errors import DataError


def _load(root: Path, cache: Path, skip_bad: bool = False) -> Any:
    return load_face_data(root, 16, cache_dir=cache, skip_bad=skip_bad, progress=False, workers=0)


#: How a tool may have saved the attribute file: text -> bytes.
SAVED_AS = {
    "utf-8 with a byte-order mark": lambda t: t.encode("utf-8-sig"),
    "utf-16 little-endian with its mark": lambda t: t.encode("utf-16"),
    "utf-16 big-endian with its mark": lambda t: b"\xfe\xff" + t.encode("utf-16-be"),
    "crlf line ends": lambda t: t.replace("\n", "\r\n").encode(),
    "cr line ends": lambda t: t.replace("\n", "\r").encode(),
    "crlf in utf-16": lambda t: t.replace("\n", "\r\n").encode("utf-16"),
}


@pytest.mark.parametrize("how", SAVED_AS)
def test_attribute_files_saved_by_other_tools_load_exactly(
    make_data: Any, cache_dir: Path, how: str
) -> None:
    w = make_data.celeba(n=4, size=(16, 16), partition=(0, 0, 1, 2))
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        path = w.root / name
        path.write_bytes(SAVED_AS[how](path.read_text()))
    data = _load(w.root, cache_dir)
    assert data.names == w.names
    np.testing.assert_array_equal(data.attrs, (w.attrs > 0).astype(np.int8))
    assert data.split_source == "official"
    assert {k: v.tolist() for k, v in data.splits.items()} == {
        "train": [0, 1],
        "val": [2],
        "test": [3],
    }


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (lambda t: t.encode("utf-16-le"), "holds NUL bytes (UTF-16 without a byte-order mark"),
        (lambda t: t.replace("000002", "caf\xe9").encode("latin-1"), "byte 0xe9 on line 4"),
        (lambda t: b"\xff\xfe" + t.encode("utf-16-le")[:-1], "starts like UTF-16"),
        (lambda t: t.replace("4\n", "5\n", 1).encode(), "line 1 says 5 images but the file has 4"),
        (lambda t: t.replace("4\n", "3\n", 1).encode(), "line 1 says 3 images but the file has 4"),
    ],
    ids=["utf-16 without mark", "latin-1", "odd utf-16", "count too high", "count too low"],
)
def test_unreadable_attribute_files_are_one_line(
    make_data: Any, cache_dir: Path, raw: Any, says: str
) -> None:
    w = make_data.celeba(n=4, size=(16, 16), partition=None)
    path = w.root / "list_attr_celeba.txt"
    path.write_bytes(raw(path.read_text()))
    with pytest.raises(DataError) as err:
        _load(w.root, cache_dir)
    message = str(err.value)
    assert message.startswith(f"{path}") and says in message and "\n" not in message
    assert "save it as UTF-8" in message or "correct the count on line 1" in message


def test_a_count_that_does_not_match_is_skipped_with_skip_bad(
    make_data: Any, cache_dir: Path
) -> None:
    """A file cut short (line 1 says 4, three rows): the image without a row is skipped."""
    w = make_data.celeba(n=4, size=(16, 16), partition=None)
    path = w.root / "list_attr_celeba.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")  # drop the last row
    with pytest.raises(DataError, match="line 1 says 4 images but the file has 3 rows"):
        _load(w.root, cache_dir)
    data = _load(w.root, cache_dir, skip_bad=True)
    assert data.names == w.names[:3]
    np.testing.assert_array_equal(data.attrs, (w.attrs[:3] > 0).astype(np.int8))
    assert [Path(s.path).name for s in data.skipped] == [w.names[3]]
    assert "has no row in the attribute file" in data.skipped[0].reason


@pytest.mark.parametrize("link", ["loop", "missing target"])
def test_a_link_that_leads_nowhere_is_named_or_skipped(
    make_data: Any, cache_dir: Path, link: str
) -> None:
    w = make_data.folder(sizes=((16, 16),) * 3)
    _load(w.root, cache_dir)  # cached before the link appears
    bad = w.root / "zz.png"
    bad.symlink_to("zz.png" if link == "loop" else "no-such.png")
    reason = "a symbolic link loop" if link == "loop" else "a symbolic link to a missing file"
    with pytest.raises(DataError) as err:
        _load(w.root, cache_dir)  # the cache of the same folder is not reused
    assert str(err.value).startswith(f"{bad}: {reason}") and "fix or remove the link" in str(
        err.value
    )
    data = _load(w.root, cache_dir, skip_bad=True)
    assert data.names == w.names
    for i, pixels in enumerate(w.images):
        np.testing.assert_array_equal(data.images[i], pixels)
    assert [(s.path, s.reason.split(" (")[0]) for s in data.skipped] == [(str(bad), reason)]


def test_a_dataset_folder_that_is_a_link_loop(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "faces"
    os.symlink("faces", root)
    with pytest.raises(DataError, match=r"faces is a symbolic link loop .*; fix or remove"):
        _load(root, cache_dir)
    os.unlink(root)
    (tmp_path / "faces").mkdir()
    (root / "img_align_celeba").symlink_to("img_align_celeba")  # a layout folder that loops
    with pytest.raises(DataError, match="img_align_celeba is a symbolic link loop"):
        _load(root, cache_dir)


def test_a_file_name_with_control_characters_is_shown_escaped(
    make_data: Any, cache_dir: Path
) -> None:
    w = make_data.folder(sizes=((16, 16),) * 2)
    odd = w.root / "bad\n\x1b[31m.png"
    odd.write_bytes(b"not an image")
    with pytest.raises(DataError) as err:
        _load(w.root, cache_dir)
    assert str(err.value).startswith(f"{w.root}/bad\\n\\x1b[31m.png: not a readable image")
    assert str(err.value).isprintable()
    make_data.save_image(odd, w.images[0])  # a good image of that name loads, and caches
    for _ in range(2):
        data = _load(w.root, cache_dir)
        assert data.names == [odd.name, *w.names]  # in name order
        np.testing.assert_array_equal(data.images[0], w.images[0])
