"""Fixtures of the app tests: explorer sessions on the tiny runs (one per model kind)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from latentcam.app.session import ExplorerSession


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def open_session(runs: dict[str, Path]) -> Callable[..., ExplorerSession]:
    """``open_session(kind, **options)``: a fresh session on the tiny run of that kind."""

    def make(kind: str, **options: object) -> ExplorerSession:
        return ExplorerSession.open(runs[kind], n=6, top=4, gallery=4, **options)  # type: ignore[arg-type]

    return make
