"""The decoded-array cache that training reads: each dataset decoded once per image size.

A cache folder holds, for N items at side S:

- ``images.npy``  (N, S, S, 3) uint8 RGB
- ``parts.npy``   (N, S, S) uint8 class ids 0..18 (when the dataset has masks)
- ``attrs.npy``   (N, 40) int8 in {0, 1} (when it has attributes)
- ``factors.npy`` (N, F) float32 (synthetic faces' ground-truth factors)
- ``partition.npy`` (N,) int8 official split codes (CelebA)
- ``meta.json``   names, layout, native sizes, what was skipped, the source fingerprint

Arrays are opened with ``np.load(mmap_mode="r")``: a training step slices them without
decoding anything (decoding PNGs every step cost 8-15% of a 64 px VAE step here). The folder
name carries a hash of the absolute source path, layout, size, ``skip_bad`` and the source's
fingerprint (file count, total bytes, newest mtime, digest of the names), so a changed
dataset gets a new cache and later runs reuse an unchanged one. A build streams items into
memory-mapped files inside a temporary sibling folder (memory stays bounded for the 30,000
CelebAMask-HQ images) and renames it at the end: an interrupted build leaves no cache, and
the next build removes the folder of a killed one (``.NAME.<pid>.<random>.tmp``, see
:func:`latentcam.io.remove_stale_temps`).
A lock file serialises concurrent builds (e.g. the ranks of a DDP job).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from latentcam.data import imageio
from latentcam.data.imageio import BadFile, DecodedItem, Record, Skipped
from latentcam.data.layouts import Listing, SourceIndex
from latentcam.errors import DataError
from latentcam.io import (
    check_free_space,
    ensure_dir,
    make_temp_dir,
    remove_stale_temps,
    reserve,
    write_error,
    write_json,
    writing,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: builds are not serialised
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Bump when the cache's content or format changes: old caches are then rebuilt.
CACHE_VERSION = 1
#: Environment variable naming the cache folder (DataConfig.cache_dir wins over it).
CACHE_ENV = "LATENTCAM_CACHE"
#: Items per dataset above which decoding uses worker processes when ``workers`` is None.
PARALLEL_MIN_ITEMS = 512


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$LATENTCAM_CACHE``, else ``~/.cache/latentcam``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "latentcam"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def cache_name(listing: Listing, size: int, skip_bad: bool) -> tuple[str, str]:
    """Folder name of a dataset's cache, and the prefix it shares with older versions of it.

    The prefix hashes what identifies the source (absolute path, layout, size, skip_bad,
    :data:`CACHE_VERSION`); the suffix hashes the source's fingerprint.
    """
    source = {
        "root": str(listing.root),
        "layout": listing.layout,
        "size": size,
        "skip_bad": skip_bad,
        "version": CACHE_VERSION,
    }
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", listing.root.name)[:32] or "root"
    prefix = f"{label}-{listing.layout}-{size}px-{_digest(source)}-"
    return prefix + _digest(listing.fingerprint.as_dict()), prefix


@contextlib.contextmanager
def cache_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock named after ``target`` (a hidden sibling file ``.NAME.lock``).

    Builds of the same cache wait for each other instead of decoding twice.
    """
    ensure_dir(target.parent, what="cache")
    lock_path = target.parent / f".{target.name}.lock"
    with writing(lock_path):
        handle = open(lock_path, "a")
    with handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class CachedArrays:
    """A cache folder opened read-only; arrays are memory-mapped (see the module doc)."""

    folder: Path
    meta: dict[str, Any]
    images: np.ndarray
    parts: np.ndarray | None
    attrs: np.ndarray | None
    factors: np.ndarray | None
    partition: np.ndarray | None


def _auto_workers(num_items: int) -> int:
    if num_items < PARALLEL_MIN_ITEMS:
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return min(cores, 8) if cores > 1 else 0


def _decode_all(
    records: Sequence[Record], size: int, workers: int
) -> Generator[DecodedItem | BadFile, None, None]:
    """Decode records in order, in this process or in ``workers`` processes."""
    jobs = ((record, size) for record in records)
    if workers <= 1:
        for job in jobs:
            yield imageio.decode_or_error(job)
        return
    # fork (Linux): workers start at once and never re-import the caller's __main__, so a
    # script without a main guard, a notebook or stdin works; they only run PIL and NumPy.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(1, min(64, len(records) // (workers * 8)))
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        yield from executor.map(imageio.decode_or_error, jobs, chunksize=chunk)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _open_array(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """A new .npy memory-mapped for writing, its disk space allocated first: a map of a file
    on a full disk would die of SIGBUS on the first page that finds no room.

    Raises:
        OutputError: the disk has no room for the array.
    """
    needed = int(np.prod(shape)) * np.dtype(dtype).itemsize
    check_free_space(
        path.parent,
        needed,
        f"the cache file {path.name}",
        "free some space, or put the cache elsewhere (data.cache_dir, --cache-dir or "
        f"${CACHE_ENV})",
    )
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    reserve(path, os.path.getsize(path))
    return array


def _compact(path: Path, rows: int) -> None:
    """Shrink the .npy at ``path`` to its first ``rows`` rows (streamed, memory-bounded)."""
    source = np.load(path, mmap_mode="r")
    short = path.with_suffix(".part.npy")
    target = _open_array(short, source.dtype, (rows, *source.shape[1:]))
    for start in range(0, rows, 1024):
        target[start : start + 1024] = source[start : min(rows, start + 1024)]
    target.flush()
    del target, source
    os.replace(short, path)


def build_cache(
    index: SourceIndex,
    size: int,
    folder: Path,
    *,
    fingerprint: dict[str, Any],
    skip_bad: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> None:
    """Decode every item of ``index`` at side ``size`` into the cache folder ``folder``.

    Items stream into memory-mapped files in a temporary sibling folder, renamed to
    ``folder`` once complete; on any error (or interruption) the temporary folder is
    removed and nothing is left behind.

    Args:
        workers: decoding processes; 0 decodes in this process; None picks 0 for fewer
            than :data:`PARALLEL_MIN_ITEMS` items, else up to 8 (one per available core).

    Raises:
        BadFile: a bad item when ``skip_bad`` is False.
        DataError: every item was bad.
    """
    started = time.perf_counter()
    records = index.records
    total = len(records)
    workers = _auto_workers(total) if workers is None else workers
    ensure_dir(folder.parent, what="cache")
    for stale in folder.parent.glob(f".tmp-{folder.name}-*"):  # older versions' temp names
        shutil.rmtree(stale, ignore_errors=True)
    remove_stale_temps(folder.parent)  # builds (and synthetic renders) of killed processes
    pixels = total * size * size
    check_free_space(
        folder.parent,
        pixels * (4 if index.has_parts else 3),
        f"the cache of {index.root} ({total} items at {size} px)",
        "free some space, or put the cache elsewhere (data.cache_dir, --cache-dir or "
        f"${CACHE_ENV})",
    )
    tmp = make_temp_dir(folder.parent, folder.name)
    log.debug(
        "building cache %s from %s (%d items, %d workers)", folder, index.root, total, workers
    )
    try:
        images = _open_array(tmp / "images.npy", np.uint8, (total, size, size, 3))
        parts = None
        if index.has_parts:
            parts = _open_array(tmp / "parts.npy", np.uint8, (total, size, size))
        kept: list[int] = []
        skipped: list[Skipped] = list(index.skipped)
        native_sizes: Counter[str] = Counter()
        bar = tqdm(
            total=total,
            desc=f"caching {index.root.name} at {size}px",
            unit="img",
            disable=None if progress else True,  # None: shown on a terminal only
            leave=False,
            mininterval=0.5,
        )
        with bar, contextlib.closing(_decode_all(records, size, workers)) as results:
            for i, item in enumerate(results):
                bar.update(1)
                if isinstance(item, BadFile):
                    if not skip_bad:
                        raise item
                    skipped.append(item.skipped())
                    continue
                row = len(kept)
                images[row] = item.image
                if parts is not None and item.parts is not None:
                    parts[row] = item.parts
                native_sizes[f"{item.native_size[0]}x{item.native_size[1]}"] += 1
                kept.append(i)
        images.flush()
        del images
        if parts is not None:
            parts.flush()
            del parts
        if not kept:
            raise DataError(f"no usable images in {index.root}: all {total} were skipped as bad")
        if len(kept) < total:
            for name in ("images.npy", "parts.npy"):
                if (tmp / name).exists():
                    _compact(tmp / name, len(kept))
        rows = np.array(kept, dtype=np.int64)
        if index.attrs is not None:
            np.save(tmp / "attrs.npy", index.attrs[rows])
        if index.factors is not None:
            np.save(tmp / "factors.npy", index.factors[rows].astype(np.float32))
        if index.partition is not None:
            np.save(tmp / "partition.npy", index.partition[rows])
        meta = {
            "version": CACHE_VERSION,
            "root": str(index.root),
            "layout": index.layout,
            "size": size,
            "num_images": len(kept),
            "names": [records[i].name for i in kept],
            "factor_names": list(index.factor_names),
            "native_sizes": dict(native_sizes.most_common()),
            "skipped": [list(s) for s in skipped],
            "fingerprint": fingerprint,
            "source_meta": index.source_meta,
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        write_json(tmp / "meta.json", meta)
        os.rename(tmp, folder)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):  # a full or read-only disk: one line, no traceback
            raise write_error(err, folder) from None
        raise
    log.info(
        "cached %d images of %s at %d px in %.1f s (%s)",
        len(kept),
        index.root,
        size,
        time.perf_counter() - started,
        folder,
    )


def remove_stale(folder: Path, prefix: str) -> list[Path]:
    """Delete older caches of the same source (same prefix, other fingerprint)."""
    removed = []
    for sibling in folder.parent.glob(f"{prefix}*"):
        if sibling.is_dir() and sibling.name != folder.name:
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
            log.debug("removed stale cache %s", sibling)
    return removed


def _damaged(folder: Path, what: str) -> DataError:
    return DataError(f"cache folder {folder} is damaged ({what}); delete that folder and run again")


def open_cache(folder: Path) -> CachedArrays:
    """Open a cache folder read-only, with every array memory-mapped.

    Raises:
        DataError: the folder's files are missing or inconsistent with its meta.json.
    """
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise _damaged(folder, f"meta.json: {err}") from None
    if meta.get("version") != CACHE_VERSION:
        raise _damaged(folder, f"version {meta.get('version')}, expected {CACHE_VERSION}")
    count, size = int(meta["num_images"]), int(meta["size"])

    def load(
        name: str, shape: tuple[int, ...], dtype: type, required: bool = False
    ) -> np.ndarray | None:
        path = folder / name
        if not path.exists():
            if required:
                raise _damaged(folder, f"{name} is missing")
            return None
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise _damaged(folder, f"{name}: {err}") from None
        if array.shape[: len(shape)] != shape or array.dtype != dtype:
            raise _damaged(folder, f"{name} is {array.shape} {array.dtype}")
        return array

    images = load("images.npy", (count, size, size, 3), np.uint8, required=True)
    assert images is not None
    factors = load("factors.npy", (count, len(meta["factor_names"])), np.float32)
    return CachedArrays(
        folder=folder,
        meta=meta,
        images=images,
        parts=load("parts.npy", (count, size, size), np.uint8),
        attrs=load("attrs.npy", (count, 40), np.int8),
        factors=factors,
        partition=load("partition.npy", (count,), np.int8),
    )
