"""Fixtures of the app tests: explorer sessions on the tiny runs (one per model kind)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from latentcam.app.session import ExplorerSession


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread (the app's default) in these modules; the count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def open_session(runs: dict[str, Path]) -> Callable[..., ExplorerSession]:
    """``open_session(kind, **options)``: a fresh session on the tiny run of that kind
    (6 images, 4 sliders, 4 gallery maps unless ``options`` say otherwise)."""

    def make(kind: str, **options: object) -> ExplorerSession:
        chosen: dict[str, object] = {"n": 6, "top": 4, "gallery": 4, **options}
        return ExplorerSession.open(runs[kind], **chosen)  # type: ignore[arg-type]

    return make
