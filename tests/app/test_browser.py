"""End to end in a real browser: Debian's headless Chromium driven by Playwright.

Starts the app on the tiny vae and cvae runs (uvicorn in a background thread, on a free
port), moves a slider, toggles a CVAE attribute, uploads an image (good and bad) and saves
a screenshot. Not skipped when Chromium is missing: CI installs it (.ci/run).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from latentcam.app.server import create_app, serve_in_thread
from latentcam.app.session import ExplorerSession

Open = Callable[..., ExplorerSession]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
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


def test_vae_page(browser: Browser, open_session: Open, tmp_path: Path) -> None:
    app = create_app(open_session("vae"))
    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(
        face
    )
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"this is not an image")
    with serve_in_thread(app) as url:
        page = browser.new_page()
        page.goto(url)
        _loaded(page)
        assert page.locator(".slider").count() == 4
        assert page.locator("#gallery figure").count() == 4

        decoded, heat = _src(page, "#img-decoded"), _src(page, "#img-unitcam")
        slider = page.locator(".slider input").first
        slider.fill("2.5")  # sets the value and fires the input event
        assert _wait_changed(page, "#img-decoded", decoded) != decoded
        assert _wait_changed(page, "#img-unitcam", heat) != heat
        assert page.locator(".slider .value").first.inner_text() == "2.50"
        assert page.evaluate("window.__latencies.length") >= 1

        before = _src(page, "#img-input")
        page.set_input_files("#upload", str(face))
        assert _wait_changed(page, "#img-input", before) != before
        assert page.locator("#source").inner_text() == "upload face.png"
        assert page.locator("#error").is_hidden()

        page.set_input_files("#upload", str(notes))
        page.locator("#error").wait_for(state="visible", timeout=10_000)
        assert "'notes.png' is not a readable image" in page.locator("#error").inner_text()

        page.fill("#ckpt-path", str(tmp_path / "no_run"))
        page.click("#ckpt-load")
        page.wait_for_function(
            "document.getElementById('error').textContent.includes('checkpoint not found')",
            timeout=10_000,
        )
        assert page.locator("#info").inner_text().startswith("vae")  # the model still serves

        shot = page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        page.close()
    assert (tmp_path / "app.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" == shot[:8]
    assert Image.open(io.BytesIO(shot)).size[0] > 600


def test_cvae_attribute_toggle(browser: Browser, open_session: Open) -> None:
    with serve_in_thread(create_app(open_session("cvae"))) as url:
        page = browser.new_page()
        page.goto(url)
        _loaded(page)
        assert page.locator("#attrs input[type=checkbox]").count() == 40
        decoded = _src(page, "#img-decoded")
        page.click("#attr-Eyeglasses")
        assert _wait_changed(page, "#img-decoded", decoded) != decoded
        assert page.locator("#error").is_hidden()
        page.close()
