"""Dataset layouts on disk: detect which one a folder holds, list its files, read its labels.

Four layouts are read (see DESIGN.md, "Data formats the loaders accept"):

``celebamask_hq``
    ``CelebA-HQ-img/{i}.jpg``, ``CelebAMask-HQ-mask-anno/{i//2000}/{i:05d}_{part}.png`` (one
    binary PNG per present part), ``CelebAMask-HQ-attribute-anno.txt``; optionally
    ``synthetic-factors.csv`` and ``synthetic-meta.json`` (written by
    :func:`latentcam.data.synthetic.write_synthetic`).
``celeba``
    ``img_align_celeba/*.jpg``, ``list_attr_celeba.txt``, ``list_eval_partition.txt``.
``paired``
    ``images/NAME.jpg|png`` and ``masks/NAME.png`` holding class ids, optionally an
    attribute file (``attributes.txt``, ``list_attr_celeba.txt`` or
    ``CelebAMask-HQ-attribute-anno.txt``).
``folder``
    a plain folder of images (no labels), read non-recursively.

Reading happens in two steps so that a cached dataset costs only a directory listing:
:func:`list_source` lists the files and fingerprints them (count, total bytes, newest
mtime, a digest of the names: no file is opened), and :func:`index_source` parses the
annotation files and pairs every image with its masks and labels.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from latentcam.data.classes import ATTRIBUTE_IDS, ATTRIBUTE_NAMES, NUM_ATTRIBUTES, PART_IDS
from latentcam.data.imageio import BadFile, Record, Skipped, is_image_file
from latentcam.errors import DataError
from latentcam.io import TextEncodingError, broken_link, decode_text

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("celebamask_hq", "celeba", "paired", "folder")

#: One line per layout: what :func:`detect_layout` looks for.
LAYOUT_SIGNS: dict[str, str] = {
    "celebamask_hq": "CelebAMask-HQ (a CelebA-HQ-img/ folder)",
    "celeba": "CelebA (an img_align_celeba/ folder)",
    "paired": "paired folders (images/ and optionally masks/)",
    "folder": "a plain folder of .jpg/.jpeg/.png/.bmp/.webp images",
}

CELEBAMASK_IMAGES = "CelebA-HQ-img"
CELEBAMASK_MASKS = "CelebAMask-HQ-mask-anno"
CELEBAMASK_ATTRS = "CelebAMask-HQ-attribute-anno.txt"
CELEBA_IMAGES = "img_align_celeba"
CELEBA_ATTRS = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
PAIRED_IMAGES = "images"
PAIRED_MASKS = "masks"
PAIRED_ATTRS: tuple[str, ...] = ("attributes.txt", CELEBA_ATTRS, CELEBAMASK_ATTRS)
FACTORS_FILE = "synthetic-factors.csv"
SYNTH_META_FILE = "synthetic-meta.json"

#: Official partition codes of list_eval_partition.txt.
PARTITION_CODES: dict[int, str] = {0: "train", 1: "val", 2: "test"}


def natural_key(name: str) -> tuple[int, int, str]:
    """Sort key that puts ``2.jpg`` before ``10.jpg`` and numbers before other names."""
    stem = name.rsplit(".", 1)[0]
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


class Fingerprint:
    """The modification state of a dataset's files, computed from a listing (no reads).

    Number of files, their total size, the newest modification time, and a digest of every
    file's (path, size, mtime): any added, removed, renamed, resized or rewritten file
    changes it.
    """

    def __init__(self) -> None:
        self.num_files = 0
        self.total_bytes = 0
        self.max_mtime_ns = 0
        self._digest = hashlib.sha1()

    def add(self, entries: Sequence[os.DirEntry[str] | Path]) -> None:
        """Account for files (one ``stat`` call each)."""
        if not entries:
            return
        stats = [entry.stat() for entry in entries]
        sizes = np.fromiter((st.st_size for st in stats), np.int64, len(stats))
        mtimes = np.fromiter((st.st_mtime_ns for st in stats), np.int64, len(stats))
        self.num_files += len(stats)
        self.total_bytes += int(sizes.sum())
        self.max_mtime_ns = max(self.max_mtime_ns, int(mtimes.max()))
        paths = "\0".join(e.path if isinstance(e, os.DirEntry) else str(e) for e in entries)
        self._digest.update(paths.encode("utf-8", "surrogateescape"))
        self._digest.update(sizes.tobytes())
        self._digest.update(mtimes.tobytes())

    def add_broken(self, paths: Sequence[str]) -> None:
        """Account for links that lead nowhere (by name: they have no size or mtime), so that
        a cache made before such a link appeared is not reused as if nothing changed."""
        if paths:
            self._digest.update(("\0".join(paths) + "\0broken").encode("utf-8", "surrogateescape"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "num_files": self.num_files,
            "total_bytes": self.total_bytes,
            "max_mtime_ns": self.max_mtime_ns,
            "files_digest": self._digest.hexdigest()[:16],
        }


@dataclass
class Listing:
    """The files of one dataset, found by :func:`list_source` (nothing decoded yet).

    Attributes:
        root: absolute dataset folder.
        layout: one of :data:`LAYOUTS`.
        images: paths of the image files, in natural name order.
        masks: paths of the mask files (CelebAMask-HQ part PNGs or paired class-id PNGs).
        attr_file, partition_file, factor_file, meta_file: annotation files, if present.
        fingerprint: modification state of all the files above.
        broken: image or mask names that are symbolic links to nothing (a loop, a missing
            target), as (path, reason); the loader names them, or skips them with skip_bad.
    """

    root: Path
    layout: str
    images: list[str]
    masks: list[str] = field(default_factory=list)
    attr_file: Path | None = None
    partition_file: Path | None = None
    factor_file: Path | None = None
    meta_file: Path | None = None
    fingerprint: Fingerprint = field(default_factory=Fingerprint)
    broken: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class SourceIndex:
    """Every item of a dataset with its files and labels, ready to be decoded.

    Arrays are aligned with ``records`` (N items).

    Attributes:
        attrs: (N, 40) int8 in {0, 1} (CelebA's -1 becomes 0), or None.
        factors: (N, F) float32 ground-truth factors (synthetic faces), or None.
        partition: (N,) int8 official split codes (0 train, 1 val, 2 test), or None.
        has_parts: whether items carry a 19-class label map.
        skipped: files left out because ``skip_bad`` was set.
        source_meta: contents of ``synthetic-meta.json`` (empty for other data).
    """

    root: Path
    layout: str
    records: list[Record]
    attrs: np.ndarray | None
    factors: np.ndarray | None
    factor_names: tuple[str, ...]
    partition: np.ndarray | None
    has_parts: bool
    skipped: list[Skipped]
    source_meta: dict[str, Any]


class _Table(NamedTuple):
    """Rows of an annotation file keyed by image stem, and the rows that were bad."""

    path: Path
    rows: dict[str, Any]
    bad_rows: dict[str, str]


def _is_file(entry: os.DirEntry[str], broken: list[tuple[str, str]]) -> bool:
    """``entry.is_file()``; a link that leads nowhere (a loop raises ELOOP) goes to ``broken``."""
    try:
        if entry.is_file():
            return True
    except OSError:
        pass
    reason = broken_link(entry.path)
    if reason is not None:
        broken.append((entry.path, reason))
    return False


def _scan(
    folder: Path,
    keep: Callable[[str], bool],
    fingerprint: Fingerprint,
    sort: bool = True,
    broken: list[tuple[str, str]] | None = None,
) -> list[str]:
    """Paths of the files (not folders) directly in ``folder`` whose name passes ``keep``.

    Plain strings, in natural name order when ``sort``: a listing of the 330,000 files of
    CelebAMask-HQ must stay cheap, since every load (also from the cache) makes one.
    Entries that pass ``keep`` but are symbolic links to nothing (a loop, a missing target)
    are added to ``broken`` as (path, reason), so that the loader can name or skip them.
    """
    broken = [] if broken is None else broken
    try:
        with os.scandir(folder) as it:
            found = [
                e for e in it if not e.name.startswith(".") and keep(e.name) and _is_file(e, broken)
            ]
    except OSError as err:
        reason = broken_link(folder)
        raise DataError(
            f"{folder} is {reason}; fix or remove the link"
            if reason
            else f"cannot list {folder}: {err.strerror}; check the path and its permissions"
        ) from None
    if sort:
        found.sort(key=lambda e: natural_key(e.name))
    fingerprint.add(found)
    return [e.path for e in found]


def _annotation(path: Path, fingerprint: Fingerprint) -> Path | None:
    if path.is_file():
        fingerprint.add([path])
        return path
    return None


def detect_layout(path: str | Path) -> str:
    """Which layout a dataset folder holds: one of :data:`LAYOUTS`.

    Raises:
        DataError: the folder is missing, is a file, is empty, or matches no layout.
    """
    root = Path(path)
    layout_folders = (
        CELEBAMASK_IMAGES,
        CELEBAMASK_MASKS,
        CELEBA_IMAGES,
        PAIRED_IMAGES,
        PAIRED_MASKS,
    )
    for folder in (root, *(root / name for name in layout_folders)):
        reason = broken_link(folder)
        if reason is not None:
            raise DataError(f"{folder} is {reason}; fix or remove the link")
    if not root.exists():
        raise DataError(
            f"dataset folder {root} does not exist; give an existing dataset folder or the word "
            "'synth' for built-in synthetic faces"
        )
    if not root.is_dir():
        raise DataError(f"{root} is a file; give the folder that holds the dataset")
    if (root / CELEBAMASK_IMAGES).is_dir():
        return "celebamask_hq"
    if (root / CELEBA_IMAGES).is_dir():
        return "celeba"
    if (root / PAIRED_IMAGES).is_dir():
        return "paired"
    try:
        names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    except OSError as err:
        raise DataError(f"cannot list {root}: {err.strerror}; check its permissions") from None
    if any(is_image_file(n) and (root / n).is_file() for n in names):
        return "folder"
    if not names:
        raise DataError(f"dataset folder {root} is empty; put images (or a dataset layout) in it")
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    raise DataError(
        f"unknown dataset layout in {root} (found: {shown}); accepted layouts: "
        + "; ".join(LAYOUT_SIGNS.values())
    )


def list_source(path: str | Path) -> Listing:
    """List a dataset's files and fingerprint them without opening any.

    Raises:
        DataError: as :func:`detect_layout`, or the layout's image folder holds no image.
    """
    layout = detect_layout(path)
    root = Path(path).resolve()
    fp = Fingerprint()
    broken: list[tuple[str, str]] = []
    masks: list[str] = []
    attr_file = partition_file = factor_file = meta_file = None
    if layout == "celebamask_hq":
        image_dir = root / CELEBAMASK_IMAGES
        images = _scan(image_dir, is_image_file, fp, broken=broken)
        mask_dir = root / CELEBAMASK_MASKS
        if mask_dir.is_dir():
            masks = _scan(mask_dir, _is_png, fp, sort=False, broken=broken)
            subdirs = sorted(
                (p for p in mask_dir.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)
            )
            for sub in subdirs:
                masks += _scan(sub, _is_png, fp, sort=False, broken=broken)
        attr_file = _annotation(root / CELEBAMASK_ATTRS, fp)
        factor_file = _annotation(root / FACTORS_FILE, fp)
        meta_file = _annotation(root / SYNTH_META_FILE, fp)
    elif layout == "celeba":
        image_dir = root / CELEBA_IMAGES
        if (image_dir / CELEBA_IMAGES).is_dir():  # the Kaggle download nests it once more
            image_dir = image_dir / CELEBA_IMAGES
        images = _scan(image_dir, is_image_file, fp, broken=broken)
        attr_file = _annotation(root / CELEBA_ATTRS, fp)
        partition_file = _annotation(root / CELEBA_PARTITION, fp)
    elif layout == "paired":
        image_dir = root / PAIRED_IMAGES
        images = _scan(image_dir, is_image_file, fp, broken=broken)
        if (root / PAIRED_MASKS).is_dir():
            masks = _scan(root / PAIRED_MASKS, _is_png, fp, broken=broken)
        found = [root / name for name in PAIRED_ATTRS if (root / name).is_file()]
        if len(found) > 1:
            log.warning("several attribute files in %s; reading %s", root, found[0].name)
        if found:
            attr_file = _annotation(found[0], fp)
    else:
        image_dir = root
        images = _scan(root, is_image_file, fp, broken=broken)
    fp.add_broken([path for path, _ in broken])
    if not images and broken:
        raise BadFile(broken[0][0], broken[0][1], "fix or remove the link")
    if not images:
        raise DataError(
            f"no images in {image_dir} (the {layout} layout keeps its images there); add "
            ".jpg/.jpeg/.png/.bmp/.webp files"
        )
    return Listing(
        root, layout, images, masks, attr_file, partition_file, factor_file, meta_file, fp, broken
    )


def _is_png(name: str) -> bool:
    return name[-4:].lower() == ".png"


# ----------------------------------------------------------------------------- annotation files


def _read_text(path: Path) -> str:
    """An annotation file's text (UTF-8 or UTF-16 with a byte-order mark, any line ends:
    :func:`latentcam.io.decode_text`)."""
    try:
        return decode_text(path.read_bytes())
    except TextEncodingError as err:
        raise DataError(f"{path} {err}") from None
    except OSError as err:
        raise DataError(
            f"cannot read {path}: {err.strerror}; check the file and its permissions"
        ) from None


def _read_lines(path: Path) -> list[str]:
    return _read_text(path).split("\n")


def _bad_row(table: dict[str, str], stem: str, path: Path, reason: str, skip_bad: bool) -> None:
    """Record a bad annotation row, or raise it when bad files are not skipped."""
    if not skip_bad:
        raise BadFile(
            path,
            reason,
            "fix that line of the file, or skip bad files with skip_bad=True (--skip-bad)",
        )
    table.setdefault(stem, f"{path}: {reason}")


def read_attribute_file(path: Path, skip_bad: bool = False) -> _Table:
    """Parse a CelebA attribute file (``list_attr_celeba.txt`` format).

    Line 1 is the image count, line 2 the 40 attribute names (any order, each once), then
    one row per image: its file name and 40 values of -1 or 1.

    Returns:
        A table whose rows map image stem -> (40,) int8 in {0, 1} in CelebA's order
        (:data:`latentcam.data.classes.ATTRIBUTE_NAMES`).

    Raises:
        DataError: the header is malformed (not skippable); a row with the wrong column
            count, a non-numeric value, a value other than -1/1 or a duplicate image name
            (unless ``skip_bad``, which marks that image bad instead).
    """
    lines = _read_lines(path)
    if len(lines) < 2:
        raise DataError(
            f"{path}: attribute file too short; line 1 must be the image count, line 2 the 40 "
            "attribute names, then one row per image"
        )
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise DataError(
            f"{path}: line 1 must be the number of images, found '{lines[0].strip()[:40]}'"
        ) from None
    names = lines[1].split()
    unknown = [n for n in names if n not in ATTRIBUTE_IDS]
    if unknown:
        raise DataError(
            f"{path}: unknown attribute name '{unknown[0]}' on line 2; use CelebA's 40 names "
            f"({', '.join(ATTRIBUTE_NAMES[:3])}, ..., {ATTRIBUTE_NAMES[-1]})"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"{path}: attribute '{repeated[0]}' appears twice on line 2; list each name once"
        )
    if len(names) != NUM_ATTRIBUTES:
        missing = [n for n in ATTRIBUTE_NAMES if n not in names]
        raise DataError(
            f"{path}: line 2 has {len(names)} attribute names, expected all {NUM_ATTRIBUTES} of "
            f"CelebA (missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})"
        )
    order = np.array([names.index(n) for n in ATTRIBUTE_NAMES])
    rows: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    bad: dict[str, str] = {}
    num_rows = 0
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        num_rows += 1
        stem = _stem(fields[0])
        if stem in first_line:
            _bad_row(
                bad,
                stem,
                path,
                f"line {lineno}: image '{fields[0]}' is listed twice (also line {first_line[stem]})",
                skip_bad,
            )
            rows.pop(stem, None)
            continue
        first_line[stem] = lineno
        if len(fields) - 1 != NUM_ATTRIBUTES:
            _bad_row(
                bad,
                stem,
                path,
                f"line {lineno} ('{fields[0]}') has {len(fields) - 1} values, expected {NUM_ATTRIBUTES} (one per name on line 2)",
                skip_bad,
            )
            continue
        try:
            values = np.array(fields[1:], dtype=np.int16)
        except (ValueError, OverflowError):
            text = next(v for v in fields[1:] if not _is_int(v))
            _bad_row(
                bad,
                stem,
                path,
                f"line {lineno} ('{fields[0]}'): value '{text}' is not a number; attribute values are -1 or 1",
                skip_bad,
            )
            continue
        wrong = values[(values != 1) & (values != -1)]
        if wrong.size:
            _bad_row(
                bad,
                stem,
                path,
                f"line {lineno} ('{fields[0]}'): value {int(wrong[0])} is not -1 or 1",
                skip_bad,
            )
            continue
        rows[stem] = (values[order] > 0).astype(np.int8)
    if declared != num_rows:  # a file cut short (an interrupted download), or edited by hand
        count = (
            f"{path}: line 1 says {declared} images but the file has {num_rows} rows; download "
            "the file again if it was cut short, or correct the count on line 1"
        )
        if not skip_bad:
            raise DataError(f"{count} (or skip bad files with skip_bad=True, --skip-bad)")
        log.warning("%s; images without a row are skipped", count)
    return _Table(path, rows, bad)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_partition_file(path: Path, skip_bad: bool = False) -> _Table:
    """Parse CelebA's ``list_eval_partition.txt``: rows ``000001.jpg 0`` (0 train, 1 val, 2 test).

    Returns:
        A table whose rows map image stem -> int code in {0, 1, 2}.
    """
    rows: dict[str, int] = {}
    bad: dict[str, str] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        stem = _stem(fields[0])
        if stem in rows or stem in bad:
            _bad_row(
                bad, stem, path, f"line {lineno}: image '{fields[0]}' is listed twice", skip_bad
            )
            rows.pop(stem, None)
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            _bad_row(
                bad,
                stem,
                path,
                f"line {lineno} is '{line.strip()[:60]}'; expected an image name and 0 (train), 1 (val) or 2 (test)",
                skip_bad,
            )
            continue
        rows[stem] = int(fields[1])
    return _Table(path, rows, bad)


def read_factor_file(path: Path, skip_bad: bool = False) -> tuple[tuple[str, ...], _Table]:
    """Parse ``synthetic-factors.csv``: header ``image,<factor names>``, rows ``{i}.jpg,<floats>``.

    Returns:
        The factor names, and a table whose rows map image stem -> (F,) float32.
    """
    try:
        table = list(csv.reader(io.StringIO(_read_text(path), newline="")))
    except csv.Error as err:
        raise DataError(
            f"cannot read factor file {path}: {err}; rewrite it with write_synthetic"
        ) from None
    if not table or not table[0] or table[0][0].strip() != "image" or len(table[0]) < 2:
        raise DataError(
            f"{path}: the header must be 'image,<factor names>'; rewrite the file with write_synthetic"
        )
    names = tuple(n.strip() for n in table[0][1:])
    rows: dict[str, np.ndarray] = {}
    bad: dict[str, str] = {}
    for lineno, fields in enumerate(table[1:], start=2):
        if not fields:
            continue
        stem = _stem(fields[0].strip())
        if stem in rows or stem in bad:
            _bad_row(
                bad, stem, path, f"line {lineno}: image '{fields[0]}' is listed twice", skip_bad
            )
            rows.pop(stem, None)
            continue
        if len(fields) != len(names) + 1:
            _bad_row(
                bad,
                stem,
                path,
                f"line {lineno} has {len(fields) - 1} values, expected {len(names)}",
                skip_bad,
            )
            continue
        try:
            values = np.array([float(v) for v in fields[1:]], dtype=np.float32)
        except ValueError:
            _bad_row(bad, stem, path, f"line {lineno}: a factor value is not a number", skip_bad)
            continue
        if not np.isfinite(values).all():
            _bad_row(bad, stem, path, f"line {lineno}: a factor value is not finite", skip_bad)
            continue
        rows[stem] = values
    return names, _Table(path, rows, bad)


# ----------------------------------------------------------------------------- pairing


class _Collector:
    """Raises each bad file, or collects it when ``skip_bad`` is set."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.skipped: list[Skipped] = []
        self.bad_names: set[str] = set()

    def bad(self, name: str, err: BadFile) -> None:
        if not self.skip_bad:
            raise err
        if name not in self.bad_names:
            self.bad_names.add(name)
            self.skipped.append(err.skipped())


def _unique_images(images: Iterable[Path], keyed: bool, out: _Collector) -> list[Path]:
    """Drop (or reject) images whose stems collide, when labels are keyed by stem."""
    if not keyed:
        return list(images)
    seen: dict[str, Path] = {}
    kept: list[Path] = []
    for path in images:
        stem = _stem(path.name)
        if stem in seen:
            out.bad(
                path.name,
                BadFile(
                    path,
                    f"duplicate name: '{seen[stem].name}' and '{path.name}' share the name '{stem}'",
                    "keep one of the two files, or skip bad files with skip_bad=True (--skip-bad)",
                ),
            )
            continue
        seen[stem] = path
        kept.append(path)
    return kept


def _celebamask_parts(
    masks: list[Path], out: _Collector
) -> tuple[dict[int, list[tuple[int, Path]]], dict[int, BadFile]]:
    """Group CelebAMask-HQ part files ``{i:05d}_{part}.png`` by image index."""
    parts: dict[int, list[tuple[int, Path]]] = {}
    bad: dict[int, BadFile] = {}
    for path in masks:
        index_text, _, part = path.stem.partition("_")
        if not index_text.isdigit() or not part:
            log.debug("ignoring %s: not named {index:05d}_{part}.png", path)
            continue
        index = int(index_text)
        class_id = PART_IDS.get(part, 0)
        if class_id == 0:
            bad[index] = BadFile(
                path,
                f"unknown part '{part}' (known parts: {', '.join(list(PART_IDS)[1:])})",
                "rename or remove the file, or skip bad files with skip_bad=True (--skip-bad)",
            )
            continue
        entries = parts.setdefault(index, [])
        twin = next((p for c, p in entries if c == class_id), None)
        if twin is not None:
            bad[index] = BadFile(
                path,
                f"duplicate part mask: {twin} holds the same part",
                "keep one of the two files, or skip bad files with skip_bad=True (--skip-bad)",
            )
            continue
        entries.append((class_id, path))
    for entries in parts.values():
        entries.sort(key=lambda item: item[0])
    return parts, bad


def _join(stem: str, image: Path, table: _Table | None, what: str, out: _Collector) -> Any:
    """The row of ``table`` for an image (None when there is no table)."""
    if table is None:
        return None
    if stem in table.bad_rows:
        out.bad(image.name, BadFile(image, table.bad_rows[stem]))
        return None
    row = table.rows.get(stem)
    if row is None:
        out.bad(
            image.name,
            BadFile(
                image,
                f"has no row in the {what} file {table.path}",
                f"add a row for '{image.name}' to {table.path.name} or remove the image, or skip bad files with skip_bad=True (--skip-bad)",
            ),
        )
    return row


_SKIP_LINK = "or skip bad files with skip_bad=True (--skip-bad)"


def index_source(listing: Listing, skip_bad: bool = False) -> SourceIndex:
    """Pair every image with its masks and labels.

    Raises:
        DataError: a malformed annotation file, or (unless ``skip_bad``) a bad item: a
            duplicate name, an image with no mask or label row, an unknown part name.
    """
    out = _Collector(skip_bad)
    for path, reason in listing.broken:
        out.bad(Path(path).name, BadFile(path, reason, f"fix or remove the link, {_SKIP_LINK}"))
    layout = listing.layout
    keyed = layout != "folder"
    images = _unique_images([Path(p) for p in listing.images], keyed, out)
    attr_table = read_attribute_file(listing.attr_file, skip_bad) if listing.attr_file else None
    part_table = (
        read_partition_file(listing.partition_file, skip_bad) if listing.partition_file else None
    )
    factor_names: tuple[str, ...] = ()
    factor_table = None
    if listing.factor_file:
        factor_names, factor_table = read_factor_file(listing.factor_file, skip_bad)
    source_meta: dict[str, Any] = {}
    if listing.meta_file:
        try:
            source_meta = json.loads(listing.meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(
                f"cannot read {listing.meta_file}: {err}; rewrite it or delete it"
            ) from None

    has_parts = bool(listing.masks)
    part_files: dict[int, list[tuple[int, Path]]] = {}
    part_bad: dict[int, BadFile] = {}
    pair_masks: dict[str, Path] = {}
    if layout == "celebamask_hq" and has_parts:
        part_files, part_bad = _celebamask_parts([Path(p) for p in listing.masks], out)
    elif layout == "paired" and has_parts:
        pair_masks = {_stem(p.name): p for p in map(Path, listing.masks)}
    elif listing.masks:
        has_parts = False
    if layout in ("celebamask_hq", "paired") and not has_parts:
        log.debug("%s has no masks: items carry no part labels", listing.root)

    records: list[Record] = []
    attrs: list[np.ndarray] = []
    factors: list[np.ndarray] = []
    partition: list[int] = []
    for image in images:
        name, stem = image.name, _stem(image.name)
        record = Record(name=name, image=image)
        if layout == "celebamask_hq" and has_parts:
            if not stem.isdigit():
                out.bad(
                    name,
                    BadFile(
                        image,
                        "name is not a number, so no mask can match it (CelebAMask-HQ images are named {i}.jpg)",
                    ),
                )
                continue
            if int(stem) in part_bad:
                out.bad(name, part_bad[int(stem)])
                continue
            if int(stem) not in part_files:  # every real face has parts: a missing download
                expected = f"{CELEBAMASK_MASKS}/{int(stem) // 2000}/{int(stem):05d}_skin.png"
                out.bad(
                    name,
                    BadFile(
                        image,
                        f"has no part masks (expected files such as {expected})",
                        "add its masks or remove the image, or skip bad files with skip_bad=True (--skip-bad)",
                    ),
                )
                continue
            record = Record(name, image, part_masks=tuple(part_files[int(stem)]), has_parts=True)
        elif layout == "paired" and has_parts:
            mask = pair_masks.get(stem)
            if mask is None:
                out.bad(
                    name,
                    BadFile(
                        image,
                        f"has no mask {listing.root / PAIRED_MASKS / (stem + '.png')}",
                        "add the mask or remove the image, or skip bad files with skip_bad=True (--skip-bad)",
                    ),
                )
                continue
            record = Record(name, image, mask=mask, has_parts=True)
        attr_row = _join(stem, image, attr_table, "attribute", out)
        factor_row = _join(stem, image, factor_table, "factor", out)
        part_row = _join(stem, image, part_table, "partition", out)
        if name in out.bad_names:
            continue
        records.append(record)
        if attr_row is not None:
            attrs.append(attr_row)
        if factor_row is not None:
            factors.append(factor_row)
        if part_row is not None:
            partition.append(part_row)
    if not records:
        raise DataError(
            f"no usable images in {listing.root}: all {len(listing.images)} were skipped as bad"
        )
    return SourceIndex(
        root=listing.root,
        layout=layout,
        records=records,
        attrs=np.stack(attrs) if attr_table is not None else None,
        factors=np.stack(factors) if factor_table is not None else None,
        factor_names=factor_names,
        partition=np.array(partition, dtype=np.int8) if part_table is not None else None,
        has_parts=has_parts,
        skipped=out.skipped,
        source_meta=source_meta,
    )
