"""The JSON API (FastAPI TestClient) and the ``latentcam app`` command's failures."""

from __future__ import annotations

import base64
import io
import logging
import re
import socket
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from latentcam.app.server import allowed_hosts, create_app, is_loopback, static_dir
from latentcam.app.session import ExplorerSession
from latentcam.cli import main
from latentcam.errors import InputError

Open = Callable[..., ExplorerSession]
OCTET = {"Content-Type": "application/octet-stream"}


def _pixels(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def _png(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header (IHDR, CRC fixed) claims ``width`` x ``height`` pixels."""
    data = _png()
    header = bytearray(data[16:29])  # IHDR data: after the signature, length and "IHDR"
    header[0:8] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    crc = zlib.crc32(b"IHDR" + bytes(header)).to_bytes(4, "big")
    return data[:16] + bytes(header) + crc + data[33:]


def _client(app: object) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1")  # type: ignore[arg-type]


@pytest.fixture
def client(open_session: Open) -> TestClient:
    return _client(create_app(open_session("vae"), max_upload_bytes=50_000))


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


def test_direction_sliders(client: TestClient) -> None:
    state = client.get("/api/state").json()
    directions = state["info"]["directions"]
    assert directions and state["info"]["direction"] is None
    name = directions[0]["name"]
    moved = client.post("/api/direction", json={"name": name, "value": 1.5}).json()
    live, info = moved["live"], moved["info"]
    assert live["direction"] == name and live["target"] == name and live["step"] == 1.5
    assert info["direction"] == name and info["direction_steps"][0] == 1.5
    assert not np.array_equal(_pixels(live["decoded"]), _pixels(state["live"]["decoded"]))
    unit = info["units"][0]
    back = client.post("/api/unit", json={"unit": unit}).json()
    assert back["live"]["direction"] is None and back["live"]["target"] == f"z{unit}"
    chosen = client.post("/api/direction", json={"name": name}).json()  # no value: choose only
    assert chosen["live"]["direction"] == name and chosen["info"]["direction_steps"][0] == 1.5
    np.testing.assert_array_equal(_pixels(chosen["live"]["decoded"]), _pixels(live["decoded"]))
    unknown = client.post("/api/direction", json={"name": "<img src=x>", "value": 1})
    assert (
        unknown.status_code == 400 and "no direction named '<img src=x>'" in unknown.json()["error"]
    )
    beyond = client.post("/api/direction", json={"name": name, "value": 11})
    assert beyond.status_code == 400 and "must be a finite number" in beyond.json()["error"]
    typed = client.post("/api/direction", json={"name": name, "value": "far"})
    assert typed.status_code == 422 and typed.json()["error"].startswith("bad request: body.value")
    after = client.get("/api/state").json()["info"]
    assert after["direction_steps"][0] == 1.5  # the refused moves changed nothing
    reset = client.post("/api/reset").json()
    assert reset["info"]["direction_steps"] == [0.0] * len(directions)


def test_errors_are_json_and_server_keeps_serving(client: TestClient) -> None:
    bad = client.post("/api/upload?name=notes.txt", content=b"not an image", headers=OCTET)
    assert bad.status_code == 400
    assert "'notes.txt' is not a readable image" in bad.json()["error"]
    huge = client.post("/api/upload?name=big.png", content=b"\0" * 60_000, headers=OCTET)
    assert huge.status_code == 413 and "limit" in huge.json()["error"]
    assert client.post("/api/offset", json={"unit": 10_000, "value": 1}).status_code == 400
    typed = client.post("/api/offset", json={"unit": "x", "value": 1})
    assert typed.status_code == 422 and typed.json()["error"].startswith("bad request: body.unit")
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json()["error"].startswith("/api/nothing")
    before = client.get("/api/state").json()["info"]["checkpoint"]
    ckpt = client.post("/api/checkpoint", json={"path": "/no/such/run"})
    assert ckpt.status_code == 400 and "checkpoint not found: /no/such/run" in ckpt.json()["error"]
    after = client.get("/api/state")
    assert after.status_code == 200 and after.json()["info"]["checkpoint"] == before
    good = client.post("/api/upload?name=face.png", content=_png(), headers=OCTET)
    assert good.status_code == 200 and good.json()["image"]["source"] == "upload face.png"


def test_upload_limits(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # streamed: no Content-Length header is sent
        for _ in range(8):
            yield b"\0" * 10_000

    streamed = client.post("/api/upload?name=stream.png", content=chunks(), headers=OCTET)
    assert streamed.status_code == 413
    assert streamed.json()["error"] == (
        "the upload 'stream.png' is larger than the limit of 0.0476837 MB; upload a smaller image"
    )
    claims = client.post(
        "/api/upload?name=wide.png", content=_png_claiming(8000, 8000), headers=OCTET
    )
    assert claims.status_code == 400
    assert "'wide.png' is 8000x8000 pixels; the limit is 40 megapixels" in claims.json()["error"]
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "multipart/form-data"}):
        refused = client.post("/api/upload?name=face.png", content=_png(), headers=headers)
        assert refused.status_code == 415, headers
        assert "send the file's bytes as application/octet-stream" in refused.json()["error"]
    typed = client.post(
        "/api/upload?name=face.png", content=_png(), headers={"Content-Type": "image/png"}
    )
    assert typed.status_code == 200 and typed.json()["image"]["source"] == "upload face.png"


def test_only_local_host_names_are_served(client: TestClient) -> None:
    for host in ("127.0.0.1:8765", "localhost", "LOCALHOST:1", "[::1]:8765"):
        assert client.get("/api/z", headers={"host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example"):
        refused = client.get("/api/z", headers={"host": host})
        assert refused.status_code == 400 and refused.text == "Invalid host header", host
    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert allowed_hosts("192.168.1.5") == ["127.0.0.1", "localhost", "::1", "192.168.1.5", "[::1]"]
    assert socket.gethostname().lower() in allowed_hosts("0.0.0.0")


def test_non_loopback_host_warns(open_session: Open, caplog: pytest.LogCaptureFixture) -> None:
    session = open_session("vae")
    with caplog.at_level(logging.WARNING, logger="latentcam.app.server"):
        create_app(session)
        assert not caplog.records
        lan = _client(create_app(session, host="192.168.1.5"))
    assert len(caplog.records) == 1
    assert "listens on 192.168.1.5, which is not a loopback address" in caplog.records[0].message
    assert lan.get("/api/z", headers={"host": "192.168.1.5:8765"}).status_code == 200
    assert lan.get("/api/z", headers={"host": "other.example"}).status_code == 400


def test_bad_checkpoints_keep_the_current_session(
    client: TestClient, runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = client.get("/api/state").json()["info"]["units"][0]
    client.post("/api/offset", json={"unit": unit, "value": 1.5})
    before = client.get("/api/state").json()["info"]
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 half a zip file")
    loaded = client.post("/api/checkpoint", json={"path": str(corrupt)})
    assert loaded.status_code == 400 and "cannot read checkpoint" in loaded.json()["error"]
    assert str(corrupt) in loaded.json()["error"]
    # a run that loads but cannot be explained (bug 1): the switch fails, the old one stays
    live_view = ExplorerSession.live_view

    def unexplainable(self: ExplorerSession) -> object:
        if self.kind == "cvae":
            raise InputError("this cvae cannot be explained")
        return live_view(self)

    monkeypatch.setattr(ExplorerSession, "live_view", unexplainable)
    switched = client.post("/api/checkpoint", json={"path": str(runs["cvae"])})
    assert switched.status_code == 400
    assert switched.json()["error"] == "this cvae cannot be explained"
    after = client.get("/api/state")
    assert after.status_code == 200 and after.json()["info"] == before
    assert client.post("/api/offset", json={"unit": unit, "value": -1}).status_code == 200


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
    other = client.post("/api/z", json=record | {"model": "segvae"})
    assert other.status_code == 400
    assert other.json()["error"] == (
        "the uploaded vector was saved from a segvae model; this run is a vae"
    )


def test_view_png(client: TestClient) -> None:
    response = client.get("/api/view.png")
    assert response.status_code == 200 and response.content[:4] == b"\x89PNG"
    assert response.headers["content-type"] == "image/png"
    assert client.get("/api/state").json()["info"]["unit_cam_on"] == "decoded"


def test_cli_bad_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    assert main(["app", str(broken), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read checkpoint" in err[0]


def test_cli_bad_z_file_exits_2(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "z.json").write_text('{"format": "latentcam-z/1", "model": "vae"}')
    assert main(["app", str(runs["vae"]), "--z", str(tmp_path / "z.json")]) == 2
    assert "latent_dim" in capsys.readouterr().err


def test_cli_threads_below_1_exit_2_before_the_run_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["app", str(tmp_path / "no-run"), "--threads", "0", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["latentcam app: error: --threads must be at least 1, got 0"]


def test_cli_bad_directions_exit_2(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "w.json").write_text("[1.0, 2.0, 3.0]")
    assert main(["app", str(runs["vae"]), "--directions", str(tmp_path / "w.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has 3 components; this model has K=8" in err[0]
    assert main(["app", str(runs["vae"]), "--names", "Smilling", "--port", "0"]) == 2
    assert "Smilling" in capsys.readouterr().err


def test_cli_bad_options_exit_2(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", str(runs["vae"]), "--layer", "encoder.block.2", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown layer 'encoder.block.2'" in err[0]
    assert "Did you mean: encoder.blocks.2" in err[0]
    with pytest.raises(SystemExit) as stop:  # argparse checks the number
        main(["app", str(runs["vae"]), "--gallery", "-1", "--port", "0"])
    assert stop.value.code == 2
    assert "--gallery: must be an integer >= 0, got -1" in capsys.readouterr().err
