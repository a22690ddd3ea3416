"""The report's section "What the model knows about each attribute": its tables hold the
numbers of metrics["directions"], its figures the maps of the directions it scored."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentcam.concepts import directions_report, evaluation_directions
from latentcam.evaluate import jsonable
from latentcam.explain.cam import compute_cams, normalise, upsample
from latentcam.explain.directions import DirectionSet
from latentcam.explain.targets import LatentDirection
from latentcam.figures import overlay
from latentcam.report.build import build_report
from latentcam.report.directions import (
    SCORE_COLUMNS,
    TITLE,
    direction_figure,
    directions_section,
    score_rows,
)
from latentcam.report.html import Report
from latentcam.runs import RunData, open_run_data


class _Tables(HTMLParser):
    """The tables (header, rows of cell texts) and figure count of one report section."""

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title = title
        self.inside = False
        self.heading = False
        self.tables: list[tuple[list[str], list[list[str]]]] = []
        self.figures = 0
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self.heading = True
        elif self.inside and tag == "table":
            self.tables.append(([], []))
        elif self.inside and tag == "tr":
            self.tables[-1][1].append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []
        elif self.inside and tag == "img":
            self.figures += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.inside = False
        elif tag in ("td", "th") and self.cell is not None:
            self.tables[-1][1][-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.heading:
            self.inside = data.strip() == self.title
            self.heading = False
        elif self.cell is not None:
            self.cell.append(data)

    def table(self, first_column: str) -> list[dict[str, str]]:
        for rows in (t[1] for t in self.tables):
            if rows and rows[0] and rows[0][0] == first_column:
                return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
        raise AssertionError(f"no table starting with '{first_column}'")


def _cell(value: Any) -> str:
    """A number as the report's tables write it."""
    return "–" if value is None else f"{float(value):.3f}"


@pytest.fixture(scope="module")
def report(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("report") / "rep"
    path = build_report(runs["vae"], out, n=2, eval_n=16, layers=("default",), progress=False)
    return path.read_text(), json.loads((out / "metrics.json").read_text())


def test_scores_table_holds_the_metrics(report: tuple[str, dict]) -> None:
    html, metrics = report
    section = metrics["directions"]
    parsed = _Tables(TITLE)
    parsed.feed(html)
    rows = parsed.table("attribute → parts")
    scored = [n for n, e in section["attributes"].items() if "best" in e]
    assert scored, "the tiny run should have attribute directions with parts"
    directions = [r for r in rows if r["handle"] == "direction"]
    assert [r["attribute → parts"].split(" → ")[0] for r in directions[:1]] == [
        next(n for n in ("Smiling", "Eyeglasses", "Wearing_Hat", "Bangs", *scored) if n in scored)
    ]  # the headline attributes come first
    assert sorted(r["attribute → parts"].split(" → ")[0] for r in directions) == sorted(scored)
    by_name = {}
    for i, row in enumerate(rows):
        if row["handle"] == "direction":
            by_name[row["attribute → parts"].split(" → ")[0]] = (row, rows[i + 1])
    for name in scored:
        entry = section["attributes"][name]
        row, unit_row = by_name[name]
        assert row["attribute → parts"] == f"{name} → {', '.join(entry['parts'])}"
        assert row["AUROC"] == _cell(entry["auroc"]) and row["faces"] == str(entry["faces"])
        assert row["layer, method"].startswith(entry["best"]["layer"])
        assert row["layer, method"].endswith(entry["best"]["method"])
        assert unit_row["AUROC"] == _cell(entry["best_unit"]["auroc"])
        sign = "−" if entry["best_unit"]["sign"] < 0 else ""
        assert unit_row["handle"] == f"{sign}unit {entry['best_unit']['unit']}"
        for key, column in SCORE_COLUMNS:
            if key == "verdict":
                assert entry["best"]["verdict"].startswith(row[column])
                assert entry["unit"]["verdict"].startswith(unit_row[column])
            else:
                assert row[column] == _cell(entry["best"][key]), (name, key)
                assert unit_row[column] == _cell(entry["unit"][key]), (name, key)
    unsupervised = parsed.table("direction")
    assert [r["direction"] for r in unsupervised] == list(section["unsupervised"])
    for row in unsupervised:
        entry = section["unsupervised"][row["direction"]]
        assert row["explained variance"] == _cell(entry["explained_variance"])
        top_name, top_r = entry["top_correlates"][0]
        assert row["tracks most (Pearson r)"].startswith(
            f"{top_name.removeprefix('factor:')} {top_r:+.2f}"
        )
    factors = [n for n, e in section.get("factors", {}).items() if "best" in e]
    if factors:
        factor_rows = parsed.table("factor → parts")
        first = next(r for r in factor_rows if r["handle"] == "direction")
        entry = section["factors"][first["factor → parts"].split(" → ")[0]]
        assert first["R²"] == _cell(entry["r2"]) and first["r"] == _cell(entry["corr"])
        assert first["pointing game"] == _cell(entry["best"]["pointing_game"])
    # the ranking, one figure per scored attribute, the factors' figure
    assert parsed.figures == 1 + len(scored) + (1 if factors else 0)
    assert "The most significant latent directions" in html


def test_score_rows_pair_each_direction_with_its_unit() -> None:
    entry = {
        "auroc": 0.9,
        "parts": ["mouth"],
        "faces": 12,
        "best_unit": {"unit": 4, "sign": -1, "auroc": 0.6},
        "best": {"layer": "b1", "method": "layercam", "pointing_game": 0.5, "chance": 0.1,
                 "cell_chance": 0.2, "verdict": "2.5x chance", "energy_in_part": 0.3,
                 "effect_pointing": 0.7, "spearman_cam_effect": 0.4},
        "unit": {"layer": "b1", "method": "layercam", "pointing_game": 0.1, "chance": 0.1,
                 "cell_chance": 0.1, "verdict": "at chance: this heatmap does not show where "
                 "the concept is", "energy_in_part": 0.1, "effect_pointing": 0.2,
                 "spearman_cam_effect": 0.0},
    }  # fmt: skip
    rows = score_rows({"Smiling": entry}, ["Smiling"], {"b1": "16x16"})
    assert [r["handle"] for r in rows] == ["direction", "−unit 4"]
    assert rows[0]["layer, method"] == "b1 (16x16) layercam"
    assert rows[0]["pointing game"] == 0.5 and rows[1]["pointing game"] == 0.1
    assert rows[0]["AUROC"] == 0.9 and rows[1]["AUROC"] == 0.6
    # the verdicts come from the numbers (latentcam.verdicts), not the stored text
    assert rows[0]["verdict"].text == "2.5× chance" and rows[0]["verdict"].level == "above"
    assert rows[1]["verdict"].text == "at chance"


def _batch(runs: dict[str, Path], kind: str, n: int = 8) -> RunData:
    return open_run_data(runs[kind], n=n, progress=False)


def _few(found: DirectionSet) -> DirectionSet:
    """Three attribute directions with parts and the unsupervised ones (a faster section)."""
    parted = [d.name for d in found if d.kind == "attribute" and d.parts][:3]
    return found.select(parted + [d.name for d in found if d.kind in ("pca", "sefa", "jacobian")])


def test_figure_heatmap_is_the_cam_of_the_direction(runs: dict[str, Path]) -> None:
    batch = _batch(runs, "vae")
    found = evaluation_directions(batch.run, None, True, True, progress=False)
    section = directions_report(
        batch.run, batch.images, None, batch.parts, found, methods=("gradcam",), progress=False
    )
    name, entry = next((n, e) for n, e in section["attributes"].items() if "best" in e)
    fig = direction_figure(batch, found[name], jsonable(entry), 1)
    columns = 2 + 5  # still panels, then the traversal's steps
    shown = fig.axes[columns].get_images()[0].get_array()  # row "heatmap", column "direction"
    x = batch.images[1:2]
    target = LatentDirection(found[name].vector, name)
    layer, method = entry["best"]["layer"], entry["best"]["method"]
    cam = compute_cams(batch.run.model, x, [target], layer=layer, method=method).maps
    expected = overlay(x, normalise(upsample(cam, x.shape[-1]))[0])[0]
    assert np.abs(np.asarray(shown, dtype=int) - expected.astype(int)).max() <= 1
    assert fig.axes[columns].get_title() == "direction"
    assert len(fig.axes) == 3 * columns
    assert fig.axes[2].get_title() == "-2 sd" and fig.axes[4].get_title() == "0 (mu)"


@pytest.mark.parametrize("kind", ["cvae", "segvae"])
def test_cvae_and_segvae_sections(runs: dict[str, Path], kind: str) -> None:
    batch = _batch(runs, kind)
    found = _few(evaluation_directions(batch.run, None, True, False, progress=False))
    section = directions_report(
        batch.run, batch.images, batch.cond, batch.parts, found, methods=("gradcam",),
        progress=False,
    )  # fmt: skip
    report = Report("test")
    sec = directions_section(report, batch, {"directions": jsonable(section)}, found)
    assert sec is not None and sec.title == TITLE
    kinds = [kind for kind, _ in sec.blocks]
    scored = [n for n, e in section["attributes"].items() if "best" in e]
    assert kinds.count("figure") == 1 + len(scored)
    assert ("table" in kinds) == bool(scored)


def test_without_masks_or_attributes(runs: dict[str, Path]) -> None:
    batch = _batch(runs, "vae")._replace(parts=None)
    found = _few(evaluation_directions(batch.run, None, True, False, progress=False))
    section = directions_report(batch.run, batch.images, None, None, found, progress=False)
    report = Report("test")
    sec = directions_section(report, batch, {"directions": jsonable(section)}, found)
    assert sec is not None
    texts = [block for kind, block in sec.blocks if kind == "text"]
    assert any("no part masks" in t for t in texts)
    parted = [n for n, e in section["attributes"].items() if e["parts"]]
    figures = [block for kind, block in sec.blocks if kind == "figure"]
    assert len(figures) == 1 + len(parted)  # the ranking, then one per attribute with parts
    assert not any(kind == "table" and "handle" in block.columns for kind, block in sec.blocks)
    assert directions_section(Report("none"), batch, {}, found) is None
    empty = Report("none")
    directions_section(empty, batch, {"directions": {}}, found)
    assert empty.sections == []
