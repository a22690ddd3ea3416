"""The decoded cache: reuse, invalidation, atomic builds, worker processes, synthetic faces."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentcam.data import imageio
from latentcam.data.cache import open_cache, resolve_cache_dir
from latentcam.data.dataset import load_face_data
from latentcam.errors import DataError


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the items decoded (in this process) during the test."""
    calls: list[str] = []
    real = imageio.decode_record

    def counting(record: imageio.Record, size: int) -> imageio.DecodedItem:
        calls.append(record.name)
        return real(record, size)

    monkeypatch.setattr(imageio, "decode_record", counting)
    return calls


def caches(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if not p.name.startswith("."))


def test_second_load_reuses_the_cache(
    make_data: Any, cache_dir: Path, decode_calls: list[str]
) -> None:
    written = make_data.celebamask_hq(n=5)
    first = load_face_data(written.root, 16, cache_dir=cache_dir, progress=False)
    assert decode_calls == ["0.png", "1.png", "2.png", "3.png", "4.png"]
    second = load_face_data(written.root, 16, cache_dir=cache_dir, progress=False)
    assert len(decode_calls) == 5  # nothing decoded again
    assert second.cache_path == first.cache_path and caches(cache_dir) == [first.cache_path.name]
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.parts, first.parts)
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    # pickling (DataLoader workers, DDP spawn) sends the cache location, not the pixels
    blob = pickle.dumps(second)
    assert len(blob) < second.images.nbytes
    np.testing.assert_array_equal(pickle.loads(blob).images, first.images)
    # another size is another cache
    load_face_data(written.root, 8, cache_dir=cache_dir, progress=False)
    assert len(decode_calls) == 10 and len(caches(cache_dir)) == 2


def test_a_changed_file_invalidates_the_cache(
    make_data: Any, cache_dir: Path, decode_calls: list[str]
) -> None:
    written = make_data.celebamask_hq(n=3, masks=False)
    old = load_face_data(written.root, 20, cache_dir=cache_dir, progress=False)
    image = written.root / "CelebA-HQ-img" / "1.png"
    make_data.save_image(image, np.zeros((20, 20, 3), np.uint8))
    os.utime(image, ns=(10**18, 10**18))  # a clearly newer mtime
    new = load_face_data(written.root, 20, cache_dir=cache_dir, progress=False)
    assert len(decode_calls) == 6 and new.cache_path != old.cache_path
    assert int(np.asarray(new.images[1]).max()) == 0
    assert caches(cache_dir) == [new.cache_path.name]  # the stale cache is removed
    # adding an image (and its attribute row) is a change too
    make_data.save_image(written.root / "CelebA-HQ-img" / "3.png", written.images[0])
    attr_file = written.root / "CelebAMask-HQ-attribute-anno.txt"
    rows = np.concatenate([written.attrs, written.attrs[:1]])
    make_data.write_attr_file(attr_file, [f"{i}.jpg" for i in range(4)], rows)
    assert load_face_data(written.root, 20, cache_dir=cache_dir, progress=False).num_images == 4
    # so is an edited attribute file
    before = len(decode_calls)
    assert load_face_data(written.root, 20, cache_dir=cache_dir, progress=False).num_images == 4
    assert len(decode_calls) == before  # unchanged: reused
    rows[0, 0] = -rows[0, 0]  # same file size, new content and mtime
    make_data.write_attr_file(attr_file, [f"{i}.jpg" for i in range(4)], rows)
    os.utime(attr_file, ns=(10**18 - 5, 10**18 - 5))
    edited = load_face_data(written.root, 20, cache_dir=cache_dir, progress=False)
    assert len(decode_calls) == before + 4 and edited.attrs[0, 0] == (rows[0, 0] > 0)


def test_interrupted_build_leaves_nothing(
    make_data: Any, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = make_data.celebamask_hq(n=6)
    real = imageio.decode_record
    calls = []

    def dies_midway(record: imageio.Record, size: int) -> imageio.DecodedItem:
        calls.append(record.name)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C
        return real(record, size)

    monkeypatch.setattr(imageio, "decode_record", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        load_face_data(written.root, 16, cache_dir=cache_dir, progress=False)
    assert caches(cache_dir) == [] and not list(cache_dir.glob(".tmp-*"))
    monkeypatch.setattr(imageio, "decode_record", real)
    data = load_face_data(written.root, 16, cache_dir=cache_dir, progress=False)
    assert data.num_images == 6 and len(caches(cache_dir)) == 1


def test_leftover_temporary_folder_is_cleaned(make_data: Any, cache_dir: Path) -> None:
    written = make_data.folder()
    first = load_face_data(written.root, 16, cache_dir=cache_dir, progress=False)
    leftover = cache_dir / f".tmp-{first.cache_path.name}-killed"
    leftover.mkdir()
    (leftover / "images.npy").write_bytes(b"half")
    first.cache_path.rename(cache_dir / "moved")  # force a rebuild of the same cache
    load_face_data(written.root, 16, cache_dir=cache_dir, progress=False)
    assert not leftover.exists()


def test_damaged_cache_is_reported(make_data: Any, cache_dir: Path) -> None:
    written = make_data.folder()
    data = load_face_data(written.root, 16, cache_dir=cache_dir, progress=False)
    (data.cache_path / "images.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cache folder .* is damaged .*delete that folder"):
        load_face_data(written.root, 16, cache_dir=cache_dir, progress=False)
    with pytest.raises(DataError, match="meta.json"):
        open_cache(cache_dir / "missing")


def test_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENTCAM_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir("") == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("LATENTCAM_CACHE")
    assert resolve_cache_dir() == Path.home() / ".cache" / "latentcam"


def test_worker_processes_give_the_same_arrays(make_data: Any, cache_dir: Path) -> None:
    written = make_data.celebamask_hq(n=6, size=(24, 24))
    serial = load_face_data(written.root, 12, cache_dir=cache_dir / "a", progress=False, workers=0)
    parallel = load_face_data(
        written.root, 12, cache_dir=cache_dir / "b", progress=False, workers=2
    )
    np.testing.assert_array_equal(parallel.images, serial.images)
    np.testing.assert_array_equal(parallel.parts, serial.parts)
    (written.root / "CelebA-HQ-img" / "4.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"4.png: not a readable image"):
        load_face_data(written.root, 12, cache_dir=cache_dir / "c", progress=False, workers=2)
    assert caches(cache_dir / "c") == []


def test_synth_is_rendered_once_and_read_as_celebamask_hq(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic = pytest.importorskip("latentcam.data.synthetic")
    data = load_face_data(
        "synth", 32, cache_dir=cache_dir, synth_n=12, synth_seed=1, progress=False
    )
    assert data.layout == "celebamask_hq" and data.num_images == 12
    assert data.root == (cache_dir / "synth-v1-n12-s32-seed1").resolve()
    assert data.factor_names == tuple(synthetic.FACTOR_NAMES)
    truth = synthetic.render_faces(12, 32, 1)
    np.testing.assert_array_equal(data.parts, truth.parts)  # masks -> label maps, exactly
    np.testing.assert_array_equal(data.attrs, (truth.attrs > 0).astype(np.int8))
    np.testing.assert_allclose(data.factors, truth.factors, atol=1e-6)
    assert np.abs(data.images.astype(int) - truth.images).mean() < 6  # JPEG quality 95

    def no_render(*args: object, **kwargs: object) -> None:
        raise AssertionError("rendered again")

    monkeypatch.setattr(synthetic, "write_synthetic", no_render)
    again = load_face_data(
        "synth", 32, cache_dir=cache_dir, synth_n=12, synth_seed=1, progress=False
    )
    assert again.cache_path == data.cache_path
