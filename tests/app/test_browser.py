"""End to end in a real browser: Debian's headless Chromium driven by Playwright.

Starts the app on the tiny vae and cvae runs (uvicorn in a background thread, on a free
port), moves a slider and a direction slider, toggles a CVAE attribute, uploads an image (good and bad), saves the
view and the latent vector (and shows a failed save), switches to a SegVAE and saves a
screenshot. Every request the page makes is recorded: each must go to the app itself or be
a data:/blob: URL (the page is offline). Not skipped when Chromium is missing: CI installs
it (.ci/run).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Download, Page, Request, sync_playwright

from latentcam.app import CHROMIUM_ARGS, CHROMIUM_PATH
from latentcam.app.runs import RunsFolder
from latentcam.app.server import create_app, serve_in_thread
from latentcam.app.session import ExplorerSession

Open = Callable[..., ExplorerSession]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, args=list(CHROMIUM_ARGS)
        )
        yield chromium
        chromium.close()


def _src(page: Page, selector: str) -> str:
    return str(page.get_attribute(selector, "src") or "")


def _wait_changed(page: Page, selector: str, old: str) -> str:
    page.wait_for_function(
        "([sel, old]) => { const s = document.querySelector(sel).getAttribute('src'); "
        "return s && s !== old; }",
        arg=[selector, old],
        timeout=10_000,
    )
    return _src(page, selector)


def _loaded(page: Page) -> None:
    page.wait_for_function("window.__updates >= 1", timeout=15_000)


#: Counts the page's fetches in flight (until the response headers arrive) and the most at
#: once: with one request queue there is never more than one.
COUNT_FETCHES = """
window.__inFlight = 0;
window.__maxInFlight = 0;
const pageFetch = window.fetch.bind(window);
window.fetch = async (...args) => {
  window.__inFlight += 1;
  window.__maxInFlight = Math.max(window.__maxInFlight, window.__inFlight);
  try {
    return await pageFetch(...args);
  } finally {
    window.__inFlight -= 1;
  }
};
"""


def _open(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A new page on ``url`` that counts its fetches; the URLs of all its requests."""
    page = browser.new_page()
    requests: list[str] = []

    def record(request: Request) -> None:
        requests.append(request.url)

    page.on("request", record)
    page.add_init_script(COUNT_FETCHES)
    page.goto(url)
    _loaded(page)
    return page, requests


def _assert_offline(requests: list[str], url: str) -> None:
    origin = urlsplit(url)
    assert requests and requests[0] == url
    for request in requests:
        parts = urlsplit(request)
        same = (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc)
        assert same or parts.scheme in ("data", "blob"), request


def _updates(page: Page) -> int:
    return int(page.evaluate("window.__updates"))


def _wait_updates(page: Page, count: int) -> None:
    page.wait_for_function(f"window.__updates >= {count}", timeout=15_000)


def test_vae_page(
    browser: Browser, open_session: Open, runs: dict[str, Path], tmp_path: Path
) -> None:
    options = {"n": 6, "top": 4, "gallery": 4}
    folder = RunsFolder(runs["vae"].parent)
    app = create_app(open_session("vae"), open_options=options, runs=folder)
    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(
        face
    )
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"this is not an image")
    with serve_in_thread(app) as url:
        page, requests = _open(browser, url)
        # the runs it may load are offered as the path box's suggestions
        page.wait_for_function(
            "document.querySelectorAll('#runs-list option').length > 0", timeout=10_000
        )
        offered = page.eval_on_selector_all("#runs-list option", "els => els.map(e => e.value)")
        assert offered == [e.path for e in folder.list().entries]
        assert offered[:2] == ["cvae", "cvae/checkpoints/best.ckpt"] and "segvae" in offered
        assert page.locator("#runs-note").inner_text() == f"{len(offered)} under {folder.root}"
        assert page.locator(".slider").count() == 4
        assert page.locator("#gallery figure").count() == 4
        assert page.locator("#cap-unitcam").inner_text().endswith("(re-encoded)")

        decoded, heat = _src(page, "#img-decoded"), _src(page, "#img-unitcam")
        slider = page.locator(".slider input").first
        slider.fill("2.5")  # sets the value and fires the input event
        assert _wait_changed(page, "#img-decoded", decoded) != decoded
        assert _wait_changed(page, "#img-unitcam", heat) != heat
        assert page.locator(".slider .value").first.inner_text() == "2.50"
        assert page.evaluate("window.__latencies.length") >= 1

        # a unit click and a slider move in the same instant: sent one after the other, so
        # the last one asked is the one shown
        first = int(str(page.locator(".slider").first.get_attribute("data-unit")))
        done = _updates(page) + 2
        page.evaluate(
            """() => {
              document.querySelector('#gallery figure:nth-child(2)').click();
              const input = document.querySelector('.slider input');
              input.value = '1.5';
              input.dispatchEvent(new Event('input'));
            }"""
        )
        _wait_updates(page, done)
        assert page.locator("#cap-decoded").inner_text() == f"decoded: z{first} +1.50"
        done = _updates(page) + 9
        page.click("#play")  # the paper's steps 0.1 ... 0.9, with a unit click in between
        page.locator("#gallery figure").nth(2).click()
        _wait_updates(page, done + 1)
        page.wait_for_function("!document.getElementById('play').disabled", timeout=15_000)
        assert page.locator("#cap-decoded").inner_text() == f"decoded: z{first} +0.90"
        assert page.evaluate("window.__maxInFlight") == 1

        with page.expect_download() as saved_view:
            page.click("#save-view")
        assert _download(saved_view.value)[:8] == b"\x89PNG\r\n\x1a\n"
        with page.expect_download() as saved_z:
            page.click("#save-z")
        record = json.loads(_download(saved_z.value))
        assert record["format"] == "latentcam-z/1" and record["offsets"][first] == pytest.approx(
            0.9
        )
        # a direction slider: z moves along w, and the maps become the direction's
        directions = page.locator(".dslider")
        assert directions.count() >= 1 and page.locator("#dir-panel").is_visible()
        name = directions.first.locator("label").inner_text()
        directions.first.locator("input").fill("1")  # (on the tiny run, 1 sd barely shows)
        page.wait_for_function(
            "document.getElementById('cap-decoded').textContent.endsWith(' sd')", timeout=10_000
        )
        assert page.locator("#cap-decoded").inner_text() == f"decoded: {name} +1.00 sd"
        assert page.locator("#cap-unitcam").inner_text() == f"Grad-CAM {name} (re-encoded)"
        assert page.locator(".dslider.chosen").count() == 1
        assert page.locator(".slider.chosen").count() == 0

        downloads: list[Download] = []
        page.on("download", lambda download: downloads.append(download))
        page.route(
            "**/api/view.png",
            lambda route: route.fulfill(
                status=500, content_type="application/json", body='{"error": "no figure today"}'
            ),
        )
        page.click("#save-view")
        page.locator("#error").wait_for(state="visible", timeout=10_000)
        assert page.locator("#error").inner_text() == "no figure today"
        assert downloads == []  # the error reply was not saved as a file
        page.unroute("**/api/view.png")

        before = _src(page, "#img-input")
        page.set_input_files("#upload", str(face))
        assert _wait_changed(page, "#img-input", before) != before
        assert page.locator("#source").inner_text() == "upload face.png"
        assert page.locator("#error").is_hidden()
        assert page.input_value("#upload") == ""  # the same file can be chosen again

        page.set_input_files("#upload", str(notes))
        page.locator("#error").wait_for(state="visible", timeout=10_000)
        assert "'notes.png' is not a readable image" in page.locator("#error").inner_text()

        page.fill("#ckpt-path", "no_run")
        page.click("#ckpt-load")
        page.wait_for_function(
            "document.getElementById('error').textContent.includes('checkpoint not found')",
            timeout=10_000,
        )
        page.fill("#ckpt-path", str(tmp_path))  # outside the runs folder
        page.click("#ckpt-load")
        page.wait_for_function(
            "document.getElementById('error').textContent.includes('lies outside the runs')",
            timeout=10_000,
        )
        assert page.locator("#info").inner_text().startswith("vae")  # the model still serves

        # a mask-only SegVAE: its unit map is on the input, and the caption says so
        page.fill("#ckpt-path", "segvae")
        page.click("#ckpt-load")
        page.wait_for_function(
            "document.getElementById('info').textContent.startsWith('segvae')", timeout=15_000
        )
        page.wait_for_function(
            "document.getElementById('cap-unitcam').textContent.endsWith('(on the input)')",
            timeout=10_000,
        )
        assert page.locator("#seg-cam-fig").is_visible()

        shot = page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        page.close()
    assert (tmp_path / "app.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" == shot[:8]
    assert Image.open(io.BytesIO(shot)).size[0] > 600
    _assert_offline(requests, url)
    assert sum("/api/upload" in r for r in requests) == 2


def _download(download: Download) -> bytes:
    return Path(str(download.path())).read_bytes()


def test_cvae_attribute_toggle(browser: Browser, open_session: Open) -> None:
    with serve_in_thread(create_app(open_session("cvae"))) as url:
        page, requests = _open(browser, url)
        assert page.locator("#attrs input[type=checkbox]").count() == 40
        decoded = _src(page, "#img-decoded")
        page.click("#attr-Eyeglasses")
        assert _wait_changed(page, "#img-decoded", decoded) != decoded
        assert page.locator("#error").is_hidden()
        page.close()
    _assert_offline(requests, url)


def test_page_with_a_token(browser: Browser, open_session: Open) -> None:
    """Opened at the printed address (?token=...), the page works: its own requests carry
    the cookie the first answer set. Without the token nothing is served."""
    token = "browser-test-token-0123456789"
    with serve_in_thread(create_app(open_session("vae"), token=token)) as url:
        page, requests = _open(browser, f"{url}?token={token}")
        decoded = _src(page, "#img-decoded")
        page.locator(".slider input").first.fill("2")
        assert _wait_changed(page, "#img-decoded", decoded) != decoded
        assert page.locator("#error").is_hidden()
        page.close()
        stranger = browser.new_page()  # a new context: no cookie
        answer = stranger.goto(url)
        assert answer is not None and answer.status == 403
        assert "needs its token" in stranger.inner_text("body")
        stranger.close()
    assert all(r.startswith(url) for r in requests)
