"""The interactive latent explorer (``latentcam app``): a small FastAPI service and one
static page, offline.

- :mod:`latentcam.app.session`: the state of one exploration (image, latent offsets,
  condition) and every computation, as tensors and PNG bytes; usable without HTTP.
- :mod:`latentcam.app.server`: ``create_app(session) -> FastAPI``, a thin JSON layer over it.
- ``static/``: the page (vanilla HTML, CSS and JS; nothing from the network).
"""

from __future__ import annotations

from latentcam.app.session import ExplorerSession, read_z_file

__all__ = ["ExplorerSession", "read_z_file"]
