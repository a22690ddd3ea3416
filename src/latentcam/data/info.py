"""What a dataset holds: :func:`describe` (for ``latentcam data info``) and its text table.

Counts, native image sizes, part classes with their pixel frequencies (computed from the
masks in the decoded cache at a small size), attributes with their positive rates,
ground-truth factors and the split sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentcam.data.classes import ATTRIBUTE_NAMES, NUM_CLASSES, PART_NAMES
from latentcam.data.dataset import SPLITS, FaceData, load_face_data

#: Rows of the cache read at once when counting pixels (bounded memory).
_CHUNK = 2048


def class_frequencies(parts: np.ndarray) -> np.ndarray:
    """Share of pixels of each class.

    Args:
        parts: (N, S, S) uint8 class ids 0..18 (a memory map is read in chunks).

    Returns:
        (19,) float64 summing to 1.
    """
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    for start in range(0, len(parts), _CHUNK):
        counts += np.bincount(
            np.asarray(parts[start : start + _CHUNK]).ravel(), minlength=NUM_CLASSES
        )[:NUM_CLASSES]
    return counts / max(int(counts.sum()), 1)


def summarize(data: FaceData) -> dict[str, Any]:
    """The :func:`describe` dictionary of an already loaded dataset."""
    sizes = data.native_sizes
    common = next(iter(sorted(sizes.items(), key=lambda kv: -kv[1])), None)
    image_size = [int(v) for v in common[0].split("x")] if common else []
    info: dict[str, Any] = {
        "path": str(data.root),
        "layout": data.layout,
        "num_images": data.num_images,
        "image_size": image_size,
        "image_sizes": dict(sizes),
        "cache_size": data.size,
        "cache": str(data.cache_path) if data.cache_path else None,
        "num_classes": data.num_classes,
        "class_names": list(PART_NAMES) if data.parts is not None else [],
        "class_frequencies": {},
        "attributes": list(ATTRIBUTE_NAMES) if data.attrs is not None else [],
        "attribute_rates": {},
        "factors": list(data.factor_names) if data.factors is not None else [],
        "factor_stats": {},
        "splits": {name: int(len(data.splits[name])) for name in SPLITS},
        "split_source": data.split_source,
        "skipped": [{"path": s.path, "reason": s.reason} for s in data.skipped],
    }
    if data.parts is not None:
        freqs = class_frequencies(data.parts)
        info["class_frequencies"] = {
            name: round(float(f), 6) for name, f in zip(PART_NAMES, freqs, strict=True)
        }
    if data.attrs is not None:
        rates = np.asarray(data.attrs, dtype=np.float64).mean(axis=0)
        info["attribute_rates"] = {
            name: round(float(r), 4) for name, r in zip(ATTRIBUTE_NAMES, rates, strict=True)
        }
    if data.factors is not None:
        values = np.asarray(data.factors, dtype=np.float64)
        info["factor_stats"] = {
            name: {
                "mean": round(float(values[:, k].mean()), 4),
                "std": round(float(values[:, k].std()), 4),
                "min": round(float(values[:, k].min()), 4),
                "max": round(float(values[:, k].max()), 4),
            }
            for k, name in enumerate(data.factor_names)
        }
    return info


def describe(
    path: str | Path,
    size: int = 64,
    *,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    skip_bad: bool = False,
    synth_n: int = 4000,
    synth_seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Describe a dataset (layout, counts, sizes, classes, attributes, factors, splits).

    The dataset is read through the decoded cache at side ``size`` (64 px by default, the
    size training uses by default, so the cache is shared with it). Arguments as
    :func:`latentcam.data.dataset.load_face_data`.

    Returns:
        A JSON-ready dict with at least ``layout``, ``num_images``, ``image_size`` (the most
        common native [width, height]), ``num_classes`` (19 with masks, else 0),
        ``class_names``, ``class_frequencies`` (class -> share of pixels), ``attributes``
        (names, empty when none), ``attribute_rates`` (name -> share of positives),
        ``factors``, ``factor_stats``, ``splits`` ({"train", "val", "test"} -> count),
        ``split_source`` and ``skipped``.
    """
    data = load_face_data(
        path,
        size,
        cache_dir=cache_dir,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        skip_bad=skip_bad,
        synth_n=synth_n,
        synth_seed=synth_seed,
        progress=progress,
    )
    return summarize(data)


def format_info(info: dict[str, Any]) -> str:
    """A readable multi-line table of a :func:`describe` dictionary."""
    size = "x".join(str(v) for v in info["image_size"]) or "?"
    others = len(info["image_sizes"]) - 1
    lines = [
        f"dataset     {info['path']}",
        f"layout      {info['layout']}",
        f"images      {info['num_images']}  (native {size}{f', +{others} other sizes' if others > 0 else ''};"
        f" cached at {info['cache_size']}x{info['cache_size']})",
        "splits      "
        + ", ".join(f"{k} {v}" for k, v in info["splits"].items())
        + f"  ({info['split_source']})",
    ]
    if info["num_classes"]:
        lines.append(f"classes     {info['num_classes']} (share of pixels)")
        for i, (name, freq) in enumerate(info["class_frequencies"].items()):
            lines.append(f"  {i:>2} {name:<12} {100 * freq:6.2f}%")
    else:
        lines.append("classes     none (no masks)")
    if info["attributes"]:
        lines.append(f"attributes  {len(info['attributes'])} (share positive)")
        rates = list(info["attribute_rates"].items())
        for left in range(0, len(rates), 2):
            cells = [f"  {name:<20} {100 * rate:5.1f}%" for name, rate in rates[left : left + 2]]
            lines.append("".join(cells))
    else:
        lines.append("attributes  none")
    if info["factors"]:
        lines.append(f"factors     {len(info['factors'])} (mean, std, min, max)")
        for name, stats in info["factor_stats"].items():
            lines.append(
                f"  {name:<20} {stats['mean']:8.3f} {stats['std']:8.3f} {stats['min']:8.3f} {stats['max']:8.3f}"
            )
    if info["skipped"]:
        lines.append(f"skipped     {len(info['skipped'])} bad file(s)")
        lines.extend(f"  {s['path']}: {s['reason']}" for s in info["skipped"][:10])
    if info.get("cache"):
        lines.append(f"cache       {info['cache']}")
    return "\n".join(lines)
