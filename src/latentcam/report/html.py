"""A self-contained HTML report: one ``index.html`` with every image inlined.

The page works offline (no script, font or style from the network): images are embedded as
base64 data URIs, the style sheet is inline, and there is no JavaScript. A report is a list of
sections; each section holds paragraphs, figures and tables, in order.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from PIL import Image

from latentcam.io import atomic_write
from latentcam.report.trust import Glance
from latentcam.verdicts import Verdict

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("latentcam.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class Figure:
    src: str  # data URI
    caption: str
    width: int | None = None  # display width in CSS pixels (None = natural, capped by the page)
    # pixel art (faces, heatmaps) keeps hard pixels when the page enlarges it; charts never
    pixelated: bool = False
    native: bool = False  # shown at its own width (the page scrolls sideways), never shrunk


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str
    shades: list[list[float | None]] | None = None  # 0..1 per cell for a heat-table background
    levels: list[list[str]] | None = None  # per cell: a Verdict's level ("above", "at" ...) or ""


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def text(self, paragraph: str) -> Section:
        """Add a paragraph (plain text; escaped)."""
        self.blocks.append(("text", paragraph))
        return self

    def link(self, href: str, text: str) -> Section:
        """Add a paragraph holding one link (relative paths keep a report folder portable)."""
        self.blocks.append(("link", (href, text)))
        return self

    def verdict(self, label: str, judged: Verdict) -> Section:
        """Add a paragraph "label: verdict", coloured by the verdict's level."""
        self.blocks.append(("verdict", (label, judged)))
        return self

    def figure(
        self,
        image: str | Path | np.ndarray | bytes,
        caption: str = "",
        width: int | None = None,
        pixelated: bool = False,
        native: bool = False,
    ) -> Section:
        """Add an image: a PNG/GIF/JPEG path, encoded bytes, or a uint8 (H, W[, 3]) array.
        Charts are drawn at the size they are shown (``width`` None: natural width);
        ``pixelated`` only for pixel art that the page may enlarge; ``native`` for images
        that must keep their own width (strips with labels, GIFs)."""
        self.blocks.append(("figure", Figure(data_uri(image), caption, width, pixelated, native)))
        return self

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        caption: str = "",
        columns: Sequence[str] | None = None,
        heat: Sequence[str] = (),
        digits: int = 3,
    ) -> Section:
        """Add a table from dicts; columns named in ``heat`` get a background shade by value;
        a :class:`~latentcam.verdicts.Verdict` cell shows its text, coloured by level."""
        cols = list(columns or dict.fromkeys(k for r in rows for k in r))  # every row's keys
        cells = [[_fmt(r.get(c), digits) for c in cols] for r in rows]
        levels = [
            [v.level if isinstance(v := r.get(c), Verdict) else "" for c in cols] for r in rows
        ]
        shades = None
        if heat:
            shades = []
            spans = {c: _span([r.get(c) for r in rows]) for c in heat}
            for r in rows:
                shades.append([_shade(r.get(c), spans[c]) if c in spans else None for c in cols])
        judged = levels if any(any(row) for row in levels) else None
        self.blocks.append(("table", Table(cols, cells, caption, shades, judged)))
        return self


@dataclass
class Report:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    banner: list[str] = field(default_factory=list)  # undertraining warnings, shown first
    glance: Glance | None = None  # the "at a glance" box under the banner

    def section(self, title: str) -> Section:
        anchor = "s" + str(len(self.sections) + 1)
        sec = Section(title, anchor)
        self.sections.append(sec)
        return sec

    def render(self) -> str:
        return _ENV.get_template("report.html.j2").render(report=self)

    def write(self, out_dir: str | Path) -> Path:
        """Write ``out_dir/index.html`` atomically and return its path."""
        target = Path(out_dir) / "index.html"
        with atomic_write(target) as fh:
            fh.write(self.render())
        return target


def data_uri(image: str | Path | np.ndarray | bytes) -> str:
    """Encode an image as a ``data:`` URI (PNG for arrays; the file's own type for paths)."""
    if isinstance(image, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        payload, mime = buf.getvalue(), "image/png"
    elif isinstance(image, bytes):
        payload, mime = image, "image/png"
    else:
        path = Path(image)
        payload = path.read_bytes()
        mime = {
            ".gif": "image/gif",
            ".jpg": "image/jpeg",
            ".jpeg": "image/jpeg",
            ".svg": "image/svg+xml",
        }.get(path.suffix.lower(), "image/png")
    return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, Verdict):
        return value.text
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return str(value)
        number = float(value)
        return f"{number:.{digits}f}" if abs(number) < 1e4 else f"{number:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v, digits) for v in value)
    return str(value)


def _span(values: Sequence[Any]) -> tuple[float, float]:
    nums = [float(v) for v in values if isinstance(v, int | float | np.number) and np.isfinite(v)]
    return (min(nums), max(nums)) if nums else (0.0, 1.0)


def _shade(value: Any, span: tuple[float, float]) -> float | None:
    if not isinstance(value, int | float | np.number) or not np.isfinite(value):
        return None
    lo, hi = span
    return 0.0 if hi <= lo else float((value - lo) / (hi - lo))
