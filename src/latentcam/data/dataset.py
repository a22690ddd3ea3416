"""Face datasets for training and explanation: :func:`load_face_data` and :class:`FaceDataset`.

:func:`load_face_data` turns any supported layout (or the word ``"synth"``) into a
:class:`FaceData`: memory-mapped uint8 arrays at one size, read from the decoded cache
(:mod:`latentcam.data.cache`, built on first use), plus the train/val/test split.
:class:`FaceDataset` serves one split as dict items or, for the trainer, as whole batches
sliced straight from the arrays (:meth:`FaceDataset.batch`), with no per-item Python work.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from latentcam.data.cache import (
    build_cache,
    cache_lock,
    cache_name,
    open_cache,
    remove_stale,
    resolve_cache_dir,
)
from latentcam.data.classes import NUM_CLASSES, binary_mask
from latentcam.data.imageio import Skipped
from latentcam.data.layouts import PARTITION_CODES, detect_layout, index_source, list_source
from latentcam.data.synthetic import GENERATOR_VERSION, write_synthetic
from latentcam.errors import DataError, InputError

log = logging.getLogger(__name__)

#: The word that stands for the built-in synthetic faces wherever a dataset path is asked.
SYNTH = "synth"
SPLITS: tuple[str, ...] = ("train", "val", "test")

__all__ = [
    "SPLITS",
    "SYNTH",
    "FaceData",
    "FaceDataset",
    "detect_layout",
    "load_face_data",
    "make_splits",
    "synthetic_source",
]


@dataclass
class FaceData:
    """One dataset decoded at one size; the arrays are read-only memory maps of the cache.

    Attributes:
        root: the dataset folder (for ``"synth"``, the rendered folder in the cache).
        layout: ``celebamask_hq`` | ``celeba`` | ``paired`` | ``folder``.
        size: side S of every stored image and mask.
        names: N image file names, e.g. ``"0.jpg"``; item i is ``names[i]``.
        images: (N, S, S, 3) uint8 RGB.
        parts: (N, S, S) uint8 class ids 0..18 (CelebAMask-HQ order), or None.
        attrs: (N, 40) int8 in {0, 1}, CelebA's attribute order, or None.
        factors: (N, F) float32 ground-truth factors (synthetic faces), or None.
        factor_names: the F factor names.
        splits: ``"train"``/``"val"``/``"test"`` -> sorted int64 indices into 0..N-1.
        split_source: ``"official"`` (the dataset's partition file) or ``"seeded"``.
        native_sizes: ``"WxH"`` -> number of source images of that size.
        skipped: files left out by ``skip_bad=True``, and why.
        cache_path: the cache folder the arrays live in.
        source_meta: ``synthetic-meta.json`` for synthetic faces (empty otherwise).
    """

    root: Path
    layout: str
    size: int
    names: list[str]
    images: np.ndarray
    parts: np.ndarray | None
    attrs: np.ndarray | None
    factors: np.ndarray | None
    factor_names: tuple[str, ...]
    splits: dict[str, np.ndarray]
    split_source: str = "seeded"
    native_sizes: dict[str, int] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    cache_path: Path | None = None
    source_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.names)

    @property
    def num_classes(self) -> int:
        """19 when the dataset has part masks, else 0."""
        return NUM_CLASSES if self.parts is not None else 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the cache location instead of the arrays (DataLoader workers, DDP spawn)."""
        state = dict(self.__dict__)
        if self.cache_path is not None and isinstance(self.images, np.memmap):
            for name in _ARRAYS:
                state[name] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.images is None and self.cache_path is not None:
            cached = open_cache(self.cache_path)
            for name in _ARRAYS:
                setattr(self, name, getattr(cached, name))


_ARRAYS = ("images", "parts", "attrs", "factors")


def make_splits(
    num_images: int,
    *,
    partition: np.ndarray | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> dict[str, np.ndarray]:
    """Train/val/test indices: the official partition when given, else a seeded shuffle.

    Args:
        num_images: N.
        partition: (N,) codes 0 train, 1 val, 2 test (CelebA's list_eval_partition.txt).
        seed: seed of the random split; the same seed gives the same split.
        val_fraction, test_fraction: shares of the random split, each rounded to the
            nearest count; with N >= 3, a nonzero fraction gets at least one image.

    Returns:
        ``{"train", "val", "test"}`` -> sorted, disjoint int64 indices covering 0..N-1.
    """
    if partition is not None:
        return {
            name: np.flatnonzero(partition == code).astype(np.int64)
            for code, name in PARTITION_CODES.items()
        }
    if not (
        0.0 <= val_fraction < 1 and 0.0 <= test_fraction < 1 and val_fraction + test_fraction < 1
    ):
        raise InputError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must lie in [0, 1) "
            "and leave images for training"
        )

    def count(fraction: float) -> int:
        wanted = int(num_images * fraction + 0.5)
        return max(wanted, 1) if fraction > 0 and num_images >= 3 else wanted

    num_test, num_val = count(test_fraction), count(val_fraction)
    order = np.random.default_rng(seed).permutation(num_images)
    return {
        "train": np.sort(order[num_test + num_val :]).astype(np.int64),
        "val": np.sort(order[num_test : num_test + num_val]).astype(np.int64),
        "test": np.sort(order[:num_test]).astype(np.int64),
    }


def synthetic_source(cache_dir: Path, n: int, size: int, seed: int, progress: bool = True) -> Path:
    """The folder of ``n`` synthetic faces at ``size`` px from ``seed``, rendered on first use.

    Rendered by :func:`latentcam.data.synthetic.write_synthetic` in the CelebAMask-HQ layout
    into ``cache_dir/synth-v{version}-n{n}-s{size}-seed{seed}`` and reused afterwards (the
    renderer's version is in the name, so a changed renderer never reuses old faces).
    """

    folder = cache_dir / f"synth-v{GENERATOR_VERSION}-n{n}-s{size}-seed{seed}"
    if folder.is_dir():
        return folder
    with cache_lock(folder):
        if not folder.is_dir():
            log.info(
                "rendering %d synthetic faces at %d px (seed %d) into %s", n, size, seed, folder
            )
            write_synthetic(folder, n, size, seed, progress=progress)
    return folder


def load_face_data(
    path: str | Path,
    size: int,
    *,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    skip_bad: bool = False,
    synth_n: int = 4000,
    synth_seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
) -> FaceData:
    """Load a dataset at side ``size`` through the decoded cache (built on first use).

    Args:
        path: a dataset folder in any supported layout, or the string ``"synth"`` for
            synthetic faces (a folder named synth must then be given as ``Path("synth")``).
        size: side S of the square images and masks (centre crop, then resize).
        cache_dir: cache folder ("" or None: ``$LATENTCAM_CACHE``, else ~/.cache/latentcam).
        seed, val_fraction, test_fraction: the random split, used when the dataset has no
            official partition.
        skip_bad: skip bad files (corrupt images, inconsistent masks, bad label rows)
            instead of failing; they are listed in :attr:`FaceData.skipped`.
        synth_n, synth_seed: number and seed of synthetic faces when ``path`` is "synth".
        progress: show a progress bar (on a terminal) while decoding.
        workers: decoding processes for a build (None: automatic, 0: this process).

    Raises:
        DataError: a missing or unreadable dataset, an unknown layout, or a bad file (see
            :mod:`latentcam.data.layouts` and :mod:`latentcam.data.imageio`).
        InputError: an invalid size or split fraction.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or not 4 <= size <= 4096:
        raise InputError(f"image size must be an integer from 4 to 4096, got {size!r}")
    size = int(size)
    cache_root = resolve_cache_dir(cache_dir)
    if isinstance(path, str) and path == SYNTH:
        source: Path = synthetic_source(cache_root, synth_n, size, synth_seed, progress)
    else:
        source = Path(path).expanduser()
    listing = list_source(source)
    name, prefix = cache_name(listing, size, skip_bad)
    folder = cache_root / name
    if not folder.is_dir():
        with cache_lock(cache_root / prefix.rstrip("-")):  # one lock per source and size
            if not folder.is_dir():
                index = index_source(listing, skip_bad)
                build_cache(
                    index,
                    size,
                    folder,
                    fingerprint=listing.fingerprint.as_dict(),
                    skip_bad=skip_bad,
                    progress=progress,
                    workers=workers,
                )
                remove_stale(folder, prefix)
    else:
        log.debug("reusing cache %s", folder)
    cached = open_cache(folder)
    meta = cached.meta
    skipped = [Skipped(*s) for s in meta["skipped"]]
    if skipped:
        log.warning(
            "%d bad item(s) of %s were skipped, e.g. %s: %s",
            len(skipped),
            listing.root,
            *skipped[0],
        )
    splits = make_splits(
        int(meta["num_images"]),
        partition=cached.partition,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    return FaceData(
        root=listing.root,
        layout=listing.layout,
        size=size,
        names=list(meta["names"]),
        images=cached.images,
        parts=cached.parts,
        attrs=cached.attrs,
        factors=cached.factors,
        factor_names=tuple(meta["factor_names"]),
        splits=splits,
        split_source="official" if cached.partition is not None else "seeded",
        native_sizes=dict(meta["native_sizes"]),
        skipped=skipped,
        cache_path=folder,
        source_meta=dict(meta.get("source_meta") or {}),
    )


class FaceDataset(Dataset[dict[str, Any]]):
    """One split of a :class:`FaceData` as tensors.

    An item is a dict:

    - ``image``: float32 (3, S, S) in [0, 1];
    - ``parts``: int64 (S, S) class ids 0..18, or with ``binary_mask=True`` the paper's
      binary mask (1 for every part except background and skin, else 0) — only when the
      dataset has masks;
    - ``attrs``: float32 (40,) in {0, 1} — only when it has attributes;
    - ``factors``: float32 (F,) — only when it has factors;
    - ``index``: int, the item's index into the FaceData arrays (``data.names[index]``).

    :meth:`batch` returns the same keys with a leading batch dimension for many positions
    at once (one fancy-index per array); the trainer uses it instead of per-item access.

    Args:
        data: the loaded dataset.
        split: ``"train"``, ``"val"``, ``"test"``, or ``"all"`` (every image).
        binary_mask: serve the paper's binary mask as ``parts``.
        limit: keep only the first ``limit`` items of the split (0 = all).
    """

    def __init__(
        self, data: FaceData, split: str = "train", binary_mask: bool = False, limit: int = 0
    ) -> None:
        if split == "all":
            indices = np.arange(data.num_images, dtype=np.int64)
        elif split in data.splits:
            indices = data.splits[split]
        else:
            raise InputError(
                f"unknown split '{split}'; choose one of: {', '.join([*SPLITS, 'all'])}"
            )
        if limit < 0:
            raise InputError(f"limit must be >= 0, got {limit}")
        self.data = data
        self.split = split
        self.binary_mask = binary_mask
        self.indices: np.ndarray = indices[:limit] if limit else indices
        if binary_mask and data.parts is None:
            raise DataError(
                f"binary_mask needs part masks, but {data.root} ({data.layout}) has none"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def _parts(self, parts: np.ndarray, dtype: type[np.integer] = np.int64) -> torch.Tensor:
        if self.binary_mask:
            parts = binary_mask(parts)
        return torch.from_numpy(parts.astype(dtype, copy=False))

    def __getitem__(self, position: int) -> dict[str, Any]:
        if not -len(self) <= position < len(self):
            raise IndexError(
                f"position {position} out of range for the {len(self)} items of split '{self.split}'"
            )
        index = int(self.indices[position])
        data = self.data
        image = torch.from_numpy(np.array(data.images[index])).permute(2, 0, 1).float().div_(255.0)
        item: dict[str, Any] = {"image": image.contiguous(), "index": index}
        if data.parts is not None:
            item["parts"] = self._parts(np.array(data.parts[index]))
        if data.attrs is not None:
            item["attrs"] = torch.from_numpy(data.attrs[index].astype(np.float32))
        if data.factors is not None:
            item["factors"] = torch.from_numpy(np.array(data.factors[index], dtype=np.float32))
        return item

    def batch(
        self,
        positions: np.ndarray | torch.Tensor | list[int],
        *,
        uint8: bool = False,
        keys: Collection[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Many items at once, sliced from the memory-mapped arrays.

        Args:
            positions: (B,) positions within this split (0..len-1), any order.
            uint8: return ``image`` as uint8 (B, 3, S, S) in 0..255 and ``parts`` as uint8
                (4x and 8x less to copy to a GPU; convert there with ``.float() / 255`` and
                ``.long()``).
            keys: the optional fields to read (``parts``, ``attrs``, ``factors``); None
                reads every one the dataset has. ``image`` and ``index`` always come.

        Returns:
            ``image`` float32 (B, 3, S, S) in [0, 1] (or uint8), ``index`` int64 (B,), and
            where present (and asked for) ``parts`` int64 (B, S, S) (or uint8), ``attrs``
            float32 (B, 40), ``factors`` float32 (B, F).
        """
        pos = np.asarray(
            positions.cpu() if isinstance(positions, torch.Tensor) else positions, dtype=np.int64
        )
        if pos.ndim != 1:
            raise InputError(
                f"positions must be a 1-D list of item positions, got shape {pos.shape}"
            )
        if pos.size and (pos.min() < 0 or pos.max() >= len(self)):
            raise InputError(f"positions must lie in 0..{len(self) - 1} for split '{self.split}'")
        index = self.indices[pos]
        data = self.data
        pixels = torch.from_numpy(data.images[index]).permute(0, 3, 1, 2)  # (B, 3, S, S) view
        pixels = pixels.contiguous()  # permute the uint8 copy: 4x cheaper than the float one
        image = pixels if uint8 else pixels.float().div_(255.0)
        out: dict[str, torch.Tensor] = {"image": image, "index": torch.from_numpy(index)}

        def wanted(key: str) -> bool:
            return keys is None or key in keys

        if data.parts is not None and wanted("parts"):
            out["parts"] = self._parts(data.parts[index], np.uint8 if uint8 else np.int64)
        if data.attrs is not None and wanted("attrs"):
            out["attrs"] = torch.from_numpy(data.attrs[index].astype(np.float32))
        if data.factors is not None and wanted("factors"):
            out["factors"] = torch.from_numpy(np.asarray(data.factors[index], dtype=np.float32))
        return out
