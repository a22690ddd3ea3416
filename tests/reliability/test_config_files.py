"""Config files as people and editors write them (issue #20.5).

A YAML config saved with a byte-order mark, as UTF-16 or with CRLF line ends loads with
the values written; an empty section overrides nothing. Any other content either loads or
raises one ConfigError: one line that names the file (property-based, over random text and
over small edits of a valid file). The messages of the common mistakes are in
test_bad_input_sweep.py ("config file" cases).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentcam.config import load_config
from latentcam.errors import ConfigError

SETTINGS = settings(
    max_examples=int(os.environ.get("LATENTCAM_RELIABILITY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

VALID = "model:\n  latent_dim: 12\ntrain:\n  lr: 3.0e-4\n  max_steps: 7\n"


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: t.encode("utf-8-sig"),
        lambda t: t.encode("utf-16"),
        lambda t: t.replace("\n", "\r\n").encode(),
        lambda t: t.replace("\n", "\r\n").encode("utf-16"),
    ],
    ids=["utf-8 with a byte-order mark", "utf-16", "crlf", "crlf in utf-16"],
)
def test_a_config_saved_by_another_editor_loads(tmp_path: Path, encode: object) -> None:
    path = tmp_path / "run.yaml"
    path.write_bytes(encode(VALID))  # type: ignore[operator]
    cfg = load_config([path])
    assert (cfg.model.latent_dim, cfg.train.lr, cfg.train.max_steps) == (12, 3e-4, 7)


def test_an_empty_file_or_section_overrides_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    (tmp_path / "section.yaml").write_text("train:\nmodel:\n  latent_dim: 9\n")
    assert load_config([tmp_path / "empty.yaml"]) == load_config()
    cfg = load_config([tmp_path / "section.yaml"])
    assert cfg.model.latent_dim == 9 and cfg.train == load_config().train
    (tmp_path / "unknown.yaml").write_text("optim:\n")  # an unknown key, even empty, is an error
    with pytest.raises(ConfigError, match="config key 'optim' in .*unknown.yaml: Key 'optim'"):
        load_config([tmp_path / "unknown.yaml"])


def _check(path: Path) -> None:
    try:
        load_config([path])
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and message.isprintable(), message
        # the file, or (a value checked once all files are merged) the key
        assert str(path) in message or re.search(r"\b(model|data|train)\.\w+", message), message


@SETTINGS
@given(text=st.text(max_size=80))
def test_random_text_loads_or_is_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    _check(path)


@SETTINGS
@given(
    at=st.integers(0, len(VALID)),
    cut=st.integers(0, 6),
    insert=st.sampled_from(
        [
            "",
            ":",
            "- ",
            "\t",
            "!!python/object:os.system ",
            "&a ",
            "*a",
            "{",
            "]",
            "'",
            "\x00",
            "${x}",
            "\n  lr: 1\n",
            "\ntrain: 5\n",
            "\xe9",
            "nan",
            ".inf",
            "---\n",
        ]
    ),  # fmt: skip
)
def test_an_edited_config_loads_or_is_one_line(
    tmp_path: Path, at: int, cut: int, insert: str
) -> None:
    path = tmp_path / "edited.yaml"
    text = VALID[:at] + insert + VALID[at + cut :]
    path.write_bytes(text.encode("latin-1" if insert == "\xe9" else "utf-8"))
    _check(path)
