"""The interactive latent explorer (``latentcam app``): a small FastAPI service and one
static page, offline.

- :mod:`latentcam.app.session`: the state of one exploration (image, latent offsets,
  condition) and every computation, as tensors and PNG bytes; usable without HTTP.
- :mod:`latentcam.app.server`: ``create_app(session) -> FastAPI``, a thin JSON layer over it.
- ``static/``: the page (vanilla HTML, CSS and JS; nothing from the network).
"""

from __future__ import annotations

from latentcam.app.session import ExplorerSession, read_z_file

#: Flags of a headless Debian Chromium driving the page (the browser test, the latency
#: benchmark): no sandbox for containers, and nothing that reaches the network.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Debian's Chromium (``apt-get install chromium``); Playwright never downloads one.
CHROMIUM_PATH = "/usr/bin/chromium"

__all__ = ["CHROMIUM_ARGS", "CHROMIUM_PATH", "ExplorerSession", "read_z_file"]
