"""Slider-to-image latency of ``latentcam app``: server side and in a real browser.

Opens a run (default ``/work/runs/vae64``: VAE, K=100, 64 px), serves the app in a
background thread (uvicorn, a free port) and moves a slider ``--moves`` times after
``--warmup`` moves, one move at a time:

- server: time inside the request (decode z, the unit's Grad-CAM on decode(z) re-encoded,
  its effect map, three PNGs), as reported by the page's JSON (``server_ms``);
- http: the same request from Python (``httpx``), round trip including JSON and base64;
- browser: Debian's headless Chromium (Playwright): from the slider's input event to the
  new decoded image decoded and shown (``window.__latencies`` of the page).

Prints a Markdown table of medians (and 90th percentiles). Not a test.

    LATENTCAM_CACHE=/work/runs/cache python benchmarks/app_latency.py
    python benchmarks/app_latency.py --run runs/cvae64 --threads 2 --screenshot docs/figures/app_cvae64.png
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx
import torch
from playwright.sync_api import sync_playwright

from latentcam.app import CHROMIUM_ARGS, CHROMIUM_PATH
from latentcam.app.server import create_app, serve_in_thread
from latentcam.app.session import ExplorerSession


def _row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"| {name} | {len(values)} | {statistics.median(values):.1f} | {p90:.1f} |"


def _values(moves: int, warmup: int) -> list[float]:
    """Slider values that differ from move to move, within -3..3."""
    return [round(-3.0 + 6.0 * ((i * 7) % 41) / 40, 2) for i in range(warmup + moves)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="/work/runs/vae64")
    parser.add_argument("--data", default=None)
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--screenshot", default=None, help="save a PNG of the page here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    session = ExplorerSession.open(args.run, data=args.data)
    unit = session.units[0]
    values = _values(args.moves, args.warmup)
    rows = []
    with serve_in_thread(create_app(session)) as url:
        server_ms, http_ms = [], []
        with httpx.Client(base_url=url, timeout=30.0) as client:
            for i, value in enumerate(values):
                start = time.perf_counter()
                reply = client.post("/api/offset", json={"unit": unit, "value": value})
                elapsed = (time.perf_counter() - start) * 1000.0
                reply.raise_for_status()
                if i >= args.warmup:
                    http_ms.append(elapsed)
                    server_ms.append(reply.json()["live"]["server_ms"])
            client.post("/api/reset")
        rows += [_row("server (in request)", server_ms), _row("HTTP round trip", http_ms)]

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM_PATH, args=list(CHROMIUM_ARGS)
            )
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(url)
            page.wait_for_function("window.__updates >= 1", timeout=30_000)
            for value in values:
                done = page.evaluate("window.__latencies.length")
                page.evaluate(
                    "([unit, value]) => { const s = document.getElementById('slider-' + unit);"
                    " s.value = value; s.dispatchEvent(new Event('input')); }",
                    [unit, value],
                )
                page.wait_for_function(f"window.__latencies.length > {done}", timeout=30_000)
            browser_ms = page.evaluate("window.__latencies")[args.warmup :]
            rows.append(_row("browser: input event to image shown", browser_ms))
            if args.screenshot:
                Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.screenshot, full_page=True)
            browser.close()

    print(
        f"\nrun {args.run} ({session.kind}, K={session.latent_dim}, "
        f"{session.images.shape[-1]} px), unit {unit}, torch threads {args.threads}\n"
    )
    print("| measured | moves | median ms | p90 ms |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
