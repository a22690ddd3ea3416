"""The JSON API (FastAPI TestClient) and the ``latentcam app`` command's failures."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from latentcam.app.server import create_app, static_dir
from latentcam.app.session import ExplorerSession
from latentcam.cli import main

Open = Callable[..., ExplorerSession]


def _pixels(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def _png(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def client(open_session: Open) -> TestClient:
    return TestClient(create_app(open_session("vae"), max_upload_bytes=50_000))


def test_page_is_offline(client: TestClient) -> None:
    html = client.get("/").text
    assert 'id="sliders"' in html and "/static/app.js" in html
    for text in [html, *(p.read_text() for p in static_dir().iterdir())]:
        assert not re.search(r"https?://", text)  # no asset, font, script or beacon from the net
    assert client.get("/static/app.js").status_code == 200


def test_state_and_slider_move(client: TestClient) -> None:
    state = client.get("/api/state").json()
    info = state["info"]
    assert info["model"] == "vae" and len(info["units"]) == 4
    assert info["steps"] == pytest.approx([0.1 * i for i in range(1, 10)])
    assert len(state["image"]["gallery"]) == 4
    unit = info["units"][0]
    moved = client.post("/api/offset", json={"unit": unit, "value": 2.5}).json()
    assert moved["live"]["unit"] == unit and moved["info"]["offsets"][unit] == 2.5
    assert not np.array_equal(_pixels(moved["live"]["decoded"]), _pixels(state["live"]["decoded"]))
    reset = client.post("/api/reset").json()
    np.testing.assert_array_equal(
        _pixels(reset["live"]["decoded"]), _pixels(state["live"]["decoded"])
    )


def test_errors_are_json_and_server_keeps_serving(client: TestClient) -> None:
    bad = client.post("/api/upload?name=notes.txt", content=b"not an image")
    assert bad.status_code == 400
    assert "'notes.txt' is not a readable image" in bad.json()["error"]
    huge = client.post("/api/upload?name=big.png", content=b"\0" * 60_000)
    assert huge.status_code == 413 and "limit" in huge.json()["error"]
    assert client.post("/api/offset", json={"unit": 10_000, "value": 1}).status_code == 400
    assert "error" in client.post("/api/offset", json={"unit": "x"}).json()
    assert "error" in client.get("/api/nothing").json()
    before = client.get("/api/state").json()["info"]["checkpoint"]
    ckpt = client.post("/api/checkpoint", json={"path": "/no/such/run"})
    assert ckpt.status_code == 400 and "checkpoint not found: /no/such/run" in ckpt.json()["error"]
    after = client.get("/api/state")
    assert after.status_code == 200 and after.json()["info"]["checkpoint"] == before
    good = client.post("/api/upload?name=face.png", content=_png())
    assert good.status_code == 200 and good.json()["image"]["source"] == "upload face.png"


def test_load_checkpoint_switches_model(client: TestClient, runs: dict[str, Path]) -> None:
    state = client.post("/api/checkpoint", json={"path": str(runs["cvae"])}).json()
    assert state["info"]["model"] == "cvae" and len(state["info"]["attributes"]) == 40
    name = "Smiling"
    value = 1.0 - round(state["info"]["cond"][31])
    toggled = client.post("/api/attribute", json={"name": name, "value": value}).json()
    assert toggled["info"]["cond"][31] == value
    assert not np.array_equal(
        _pixels(toggled["live"]["decoded"]), _pixels(state["live"]["decoded"])
    )


def test_z_download_and_upload(client: TestClient) -> None:
    unit = client.get("/api/state").json()["info"]["units"][1]
    client.post("/api/offset", json={"unit": unit, "value": -1.0})
    saved = client.get("/api/z")
    assert "attachment" in saved.headers["content-disposition"]
    record = saved.json()
    client.post("/api/reset")
    restored = client.post("/api/z", json=record).json()
    assert restored["info"]["offsets"][unit] == -1.0
    assert client.get("/api/z").json()["z"] == pytest.approx(record["z"], abs=1e-6)
    assert client.post("/api/z", json={"format": "other"}).status_code == 400


def test_view_png(client: TestClient) -> None:
    response = client.get("/api/view.png")
    assert response.status_code == 200 and response.content[:4] == b"\x89PNG"


def test_cli_bad_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    assert main(["app", str(broken), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read checkpoint" in err[0]


def test_cli_bad_z_file_exits_2(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "z.json").write_text('{"format": "latentcam-z/1"}')
    assert main(["app", str(runs["vae"]), "--z", str(tmp_path / "z.json")]) == 2
    assert "latent_dim" in capsys.readouterr().err
