"""``latentcam synth`` and ``latentcam data info`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from latentcam.cli import main
from latentcam.data.classes import ATTRIBUTE_NAMES, PART_NAMES


def test_data_info_json(
    synth_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "info", str(synth_dir), "--json", "--cache-dir", str(cache_dir)]) == 0
    info = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    assert info["layout"] == "celebamask_hq" and info["num_images"] == 200
    assert info["image_size"] == [64, 64] and info["num_classes"] == 19
    assert info["class_names"] == list(PART_NAMES) and len(info["class_frequencies"]) == 19
    assert info["attributes"] == list(ATTRIBUTE_NAMES)
    assert info["splits"] == {"train": 160, "val": 20, "test": 20}


def test_data_info_table(
    make_data: Any, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = make_data.paired(n=3)
    assert (
        main(["data", "info", str(written.root), "--size", "20", "--cache-dir", str(cache_dir)])
        == 0
    )
    out = capsys.readouterr().out
    assert "layout      paired" in out and "images      3  (native 20x20; cached at 20x20)" in out
    assert "attributes  none" in out


def test_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("latentcam.data.synthetic")
    out = tmp_path / "faces"
    assert main(["synth", "--out", str(out), "--n", "3", "--size", "32", "--seed", "1"]) == 0
    assert sorted(p.name for p in (out / "CelebA-HQ-img").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    assert (out / "CelebAMask-HQ-attribute-anno.txt").read_text().splitlines()[0] == "3"
    assert f"wrote 3 synthetic faces (32x32 px, seed 1) to {out}" in capsys.readouterr().out


def _corrupt_image(make_data: Any, tmp_path: Path) -> tuple[Path, str]:
    written = make_data.celebamask_hq(n=3)
    bad = written.root / "CelebA-HQ-img" / "1.png"
    bad.write_bytes(b"not an image")
    return written.root, str(bad)


def _bad_attributes(make_data: Any, tmp_path: Path) -> tuple[Path, str]:
    written = make_data.celeba(n=6)
    path = written.root / "list_attr_celeba.txt"
    path.write_text(path.read_text().replace(" 1", " 2", 1))
    return written.root, str(path)


def _missing(make_data: Any, tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "nowhere", str(tmp_path / "nowhere")


def _unknown_layout(make_data: Any, tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "readme.md").write_text("hi")
    return tmp_path / "odd", "readme.md"


@pytest.mark.parametrize("make_bad", [_corrupt_image, _bad_attributes, _missing, _unknown_layout])
def test_bad_input_exits_2_with_one_line(
    make_data: Any,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
    make_bad: Any,
) -> None:
    root, named = make_bad(make_data, tmp_path)
    assert main(["data", "info", str(root), "--json", "--cache-dir", str(cache_dir)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("latentcam data: error: ") and named in lines[0]
    assert captured.out == ""


def test_synth_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("latentcam.data.synthetic")
    with pytest.raises(SystemExit) as stop:  # argparse checks the number
        main(["synth", "--out", str(tmp_path / "x"), "--n", "0", "--size", "32"])
    assert stop.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_data_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data"]) == 2
    assert "info" in capsys.readouterr().out
