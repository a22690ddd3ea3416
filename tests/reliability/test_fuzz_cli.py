"""A fuzz test of the command line (issue #20.7): Hypothesis values for every numeric option.

The options are found in the argparse tree (:func:`numeric_options`): every option of
every command whose ``type=`` is ``int``, ``float`` or one of :mod:`latentcam.cli.numbers`'
types, and, for ``train``, every int or float key of the config dataclasses given as
``key=value``. A new option or config key is fuzzed without touching this file; a new
command fails :func:`test_every_command_has_a_base_command_line` until it gets a base
command line here.

Each value is one of NaN, infinity, a huge or negative integer, zero, a float where an
integer is meant, a word, an empty string or random text (control characters included),
given as ``--option=VALUE`` (so that ``-inf`` is not taken for an option). The base command
lines keep every call validation-only: the run, the dataset or the model folder they name
is missing and synth's and demo's ``--out`` lies under a file, so an accepted value ends in
"not found" instead of real work. Each call must

- exit with 0 or 2, print one stderr line ``latentcam CMD: error: ...`` and no traceback;
- when the option's own type refuses the value, say so: ``argument --option: ...``;
- when the value is accepted but is not a finite number (``--minutes nan`` as a float),
  be refused by a later check, not reach the missing input;
- write nothing outside its ``--out`` (the test folder's tree, before and after).

Examples per option: ``LATENTCAM_RELIABILITY_EXAMPLES`` (default 5), as in test_bad_data.py.
With ``LATENTCAM_RELIABILITY_TALLY=FOLDER`` the outcomes are counted in
``FOLDER/fuzz_cli-<worker>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.reliability.tally import tally_file

from latentcam.cli import build_parser, main
from latentcam.config import DataConfig, ModelConfig, TrainConfig, load_config
from latentcam.errors import ConfigError

SETTINGS = settings(
    max_examples=int(os.environ.get("LATENTCAM_RELIABILITY_EXAMPLES", "5")),
    # the same examples on every CI run (a red CI then means a change, not a draw); asking
    # for more examples explores at random
    derandomize="LATENTCAM_RELIABILITY_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Base command line of each command: a missing input ({missing}), or an --out that
#: cannot be created ({blocked}, under a file), keeps every call validation-only.
BASE: dict[str, str] = {
    "synth": "synth --out {blocked}",
    "data info": "data info {missing}",
    "train": "train --config tiny --out {out} --no-progress --data {missing}",
    "sample": "sample {missing} --out {out}",
    "reconstruct": "reconstruct {missing} --out {out}",
    "import": "import --from diffusers {missing} --out {out}",
    "explain": "explain {missing} --out {out}",
    "directions": "directions {missing} --out {out}",
    "traverse": "traverse {missing} --out {out}",
    "evaluate": "evaluate {missing} --out {out}.json",
    "report": "report {missing} --out {out}",
    "sweep": "sweep --config tiny --out {out} --no-progress --grid latent=4 --data {missing}",
    "demo": "demo --out {blocked} --no-progress",
    "app": "app {missing}",
}

#: What a call whose value was accepted ends with: the missing input, or the blocked --out.
REACHED_THE_INPUT = re.compile(r"not found|does not exist|Not a directory|is a file")


class Option(NamedTuple):
    """A numeric option: the command (``"data info"``), its flag or config key, and how a
    flag's value is parsed (``parse(text)`` raises on a value the flag's own type refuses;
    a config key's value is checked by :func:`latentcam.config.load_config` instead)."""

    command: str
    flag: str
    parse: Callable[[str], Any]
    is_config_key: bool


def _commands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, Any]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                command = f"{path} {name}".strip()
                has_subcommands = any(
                    isinstance(a, argparse._SubParsersAction) for a in sub._actions
                )
                if not has_subcommands:
                    yield command, sub
                yield from _commands(sub, command)


def _is_numeric(kind: Any) -> bool:
    return kind in (int, float) or getattr(kind, "__name__", "") in ("integer", "number")


def numeric_options() -> list[Option]:
    """Every numeric option of every command, and train's numeric config keys."""
    found = [
        Option(command, action.option_strings[-1], action.type, False)
        for command, sub in _commands(build_parser())
        for action in sub._actions
        if action.option_strings and _is_numeric(action.type)
    ]
    for section, schema in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
        for f in fields(schema):
            if f.type in ("int", "float"):  # the annotations are strings (PEP 563)
                found.append(Option("train", f"{section}.{f.name}", str, True))
    return found


OPTIONS = numeric_options()

#: Values that every option meets, besides the random ones.
SPECIAL = [
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "0", "-0", "-1",
    "1.5", "2.0", "1e3", "1e-320", "0x10", "1_000", "١٢", "4294967296", "99999999999999999999",
    "-99999999999999999999", "", " ", "--", "ten", "True", "None", "1,2", "5-2", "1\n0", "\x1b[31m",
]  # fmt: skip

VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1e6, 1e6).map(lambda v: f"{v:.3g}"),
    st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=8),
    st.text(alphabet=string.digits + ".-+eE", max_size=8),
)


#: Outcome -> calls, over every call this process made (LATENTCAM_RELIABILITY_TALLY).
TALLY: Counter[str] = Counter()
REFUSED_BY_TYPE = "exit 2: refused by the option's type (argument --option: ...)"
REFUSED_LATER = "exit 2: refused by a later check (config validation, a range, --threads)"
ACCEPTED = "exit 2: value accepted, the missing input reached"
EXIT_0 = "exit 0"


@pytest.fixture(scope="module", autouse=True)
def _write_tally() -> Iterator[None]:
    yield
    out = tally_file("fuzz_cli", ".json")
    if out is not None:
        out.write_text(json.dumps(dict(TALLY), indent=1))


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "a-file").write_text("a file, so that nothing can be created under it\n")
    return {"tmp": tmp, "missing": tmp / "missing", "blocked": tmp / "a-file" / "sub"}


def _finite_config(cfg: Any) -> bool:
    return all(
        math.isfinite(getattr(part, f.name))
        for part in (cfg.model, cfg.data, cfg.train)
        for f in fields(part)
        if isinstance(getattr(part, f.name), float)
    )


_calls = iter(range(10**9))


@pytest.mark.parametrize("option", OPTIONS, ids=[f"{o.command}:{o.flag}" for o in OPTIONS])
@SETTINGS
@given(value=VALUES)
def test_numeric_option(
    option: Option,
    value: str,
    places: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    _session_cache: Path,
) -> None:
    tmp = places["tmp"]
    out = tmp / f"out{next(_calls)}"
    fill = {"missing": str(places["missing"]), "blocked": str(places["blocked"]), "out": str(out)}
    argv = [w.format(**fill) for w in BASE[option.command].split()]
    if option.command == "train":
        argv.append(f"data.cache_dir={_session_cache}")
    argv.append(f"{option.flag}={value}")
    before = snapshot(tmp)
    threads = torch.get_num_threads()
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse
        code = int(stop.code or 0)
    finally:
        torch.set_num_threads(threads)  # a valid --threads sets them for this process
    captured = capsys.readouterr()
    lines = [s for s in captured.err.splitlines() if s.strip()]
    assert "Traceback" not in captured.err, captured.err
    assert code in (0, 2), (argv, captured.err)
    new = {p for p in snapshot(tmp) - before if not (tmp / p).is_relative_to(out)}
    assert not new and not places["missing"].exists(), new  # nothing outside --out
    if code == 0:
        TALLY[EXIT_0] += 1
        return
    assert len(lines) == 1 and lines[0].isprintable(), captured.err
    message = lines[0]
    assert message.startswith(f"latentcam {option.command}: error: ") or message.startswith(
        f"latentcam {option.command.split()[0]}: error: "
    ), message
    TALLY[
        REFUSED_BY_TYPE
        if f"argument {option.flag}: " in message
        else ACCEPTED
        if REACHED_THE_INPUT.search(message)
        else REFUSED_LATER
    ] += 1
    if option.is_config_key:
        try:
            small = [] if option.flag == "data.synth_n" else ["data.synth_n=96"]
            cfg = load_config(["tiny"], [*small, f"{option.flag}={value}"])
        except ConfigError:
            assert option.flag in message or "override" in message, message
            return
        assert _finite_config(cfg)
        assert REACHED_THE_INPUT.search(message), message
        return
    try:
        parsed = option.parse(value)
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        assert f"argument {option.flag}: " in message, message
        return
    if isinstance(parsed, float) and not math.isfinite(parsed):
        assert not REACHED_THE_INPUT.search(message), f"{value} was taken: {message}"


def test_every_command_has_a_base_command_line() -> None:
    commands = {command for command, _ in _commands(build_parser())}
    assert commands == set(BASE), commands ^ set(BASE)
    fuzzed = {o.command for o in OPTIONS}
    assert fuzzed <= commands and len(OPTIONS) >= 60, len(OPTIONS)
    assert {"train.lr", "--minutes", "--port", "--threads", "--n"} <= {o.flag for o in OPTIONS}


#: The numbers inside list options (``--units 0-3,7``, ``--deltas``, ``--sigmas``, ``--set``),
#: which the handlers parse once the run is loaded, are fuzzed at their parsers.
LISTS = st.lists(VALUES, min_size=1, max_size=4).map(",".join) | VALUES


@SETTINGS
@given(text=LISTS, k=st.integers(1, 300))
def test_unit_lists_give_units_of_the_model_or_one_error(text: str, k: int) -> None:
    from latentcam.errors import InputError
    from latentcam.runs import parse_units

    try:
        units = parse_units(text, k)
    except InputError as err:
        assert str(err).isprintable() and "unit" in str(err), err
        return
    assert units is None or all(isinstance(u, int) and 0 <= u < k for u in units), units


@SETTINGS
@given(text=LISTS)
def test_number_lists_are_finite_or_one_error(text: str) -> None:
    from latentcam.errors import InputError
    from latentcam.runs import parse_floats

    try:
        values = parse_floats(text, "--deltas")
    except InputError as err:
        assert str(err).startswith("--deltas: ") and str(err).isprintable(), err
        return
    assert values and all(math.isfinite(v) for v in values), values


@SETTINGS
@given(value=VALUES)
def test_set_values_are_in_0_1_or_one_error(value: str) -> None:
    from latentcam.cli.train import _assignments
    from latentcam.errors import InputError

    try:
        assigned = _assignments([f"Smiling={value}"], "--set")
    except InputError as err:
        assert str(err).startswith("--set ") and str(err).isprintable(), err
        return
    assert list(assigned) == ["Smiling"] and 0.0 <= assigned["Smiling"] <= 1.0, assigned
