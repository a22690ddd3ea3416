"""Bad calls (issue #7.3): every CLI command and the public functions, given wrong input.

CLI: each case runs ``latentcam.cli.main([...])`` in-process and must exit with status 2,
print ONE line on stderr that starts ``latentcam <command>: error:`` and says what was
wrong (a fragment of each message is checked), print nothing on stdout, and leave no file
under ``--out``. Argument errors that argparse catches (a non-integer ``--n``, a missing
``--out``) follow the same rule.

API: model forward, ``latent_cams``, sampling, traversal, config and data loading, with
tensors of the wrong shape, dtype or range, a missing CVAE condition, unit indices out of
range, unknown layer names, and a data size that does not fit the model: each raises the
matching :mod:`latentcam.errors` class with a message naming the value.

Three tiny runs (vae, cvae, segvae) are trained once for the module, as in
tests/test_pipeline.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from tests.reliability.tally import tally_file

from latentcam.checkpoint import LoadedRun, check_image_size, load_run
from latentcam.cli import main
from latentcam.config import RunConfig, load_config
from latentcam.errors import CheckpointError, ConfigError, DataError, InputError
from latentcam.training.train import train


def tiny(cache: Path, *overrides: str) -> RunConfig:
    return load_config(["tiny"], [f"data.cache_dir={cache}", "data.synth_n=96", *overrides])


@pytest.fixture(scope="module")
def loaded(runs: dict[str, Path]) -> dict[str, LoadedRun]:
    return {name: load_run(path) for name, path in runs.items()}


# ----------------------------------------------------------------------------- the CLI


class Case(NamedTuple):
    """One bad command line: ``argv`` with {placeholders}, and a fragment of the message."""

    argv: str
    says: str


#: Command -> bad calls. Placeholders: {vae} {cvae} {segvae} run folders; {out} a fresh
#: output path; {blocked} a path under an existing FILE (not writable, even as root);
#: {folder} a plain image folder (no masks, no attributes) at 32 px; {corrupt} a truncated
#: checkpoint; {missing} a path that does not exist; {file} an existing text file.
CASES: dict[str, list[Case]] = {
    "synth": [
        Case("synth --out {out} --n 0 --size 32", "argument --n: must be an integer >= 1, got 0"),
        Case("synth --out {out} --n -3 --size 32", "must be an integer >= 1, got -3"),
        Case(
            "synth --out {out} --n 4 --size 0", "--size: must be an integer from 16 to 1024, got 0"
        ),
        Case("synth --out {out} --n 4 --size -32", "from 16 to 1024, got -32"),
        Case("synth --out {out} --n many", "argument --n: must be an integer >= 1, got 'many'"),
        Case("synth --n 4", "the following arguments are required: --out"),
        Case("synth --out {blocked} --n 4 --size 32", "is a file"),
        Case("synth --out {file} --n 4 --size 32", "already exists and is not an empty folder"),
    ],
    "data": [
        Case("data info {missing}", "does not exist"),
        Case("data info {file}", "is a file"),
        Case("data info {folder} --size 0", "--size: must be an integer from 4 to 4096, got 0"),
        Case("data info {folder} --size -8", "got -8"),
        Case("data info synth --synth-n 0", "--synth-n: must be an integer >= 1, got 0"),
        Case("data info {folder} --cache-dir {blocked}", "/a-file/sub: Not a directory"),
        Case("data info", "the following arguments are required: PATH"),
    ],
    "train": [
        Case("train --config tiny --out {out} model.no_such_key=1", "model.no_such_key"),
        Case(
            "train --config tiny --out {out} --size 0", "'model.image_size' must be positive, got 0"
        ),
        Case("train --config tiny --out {out} --size -64", "must be positive, got -64"),
        Case("train --config tiny --out {out} --size 48", "power of two"),
        Case("train --config tiny --out {out} --latent 0", "'model.latent_dim' must be positive"),
        Case("train --config tiny --out {out} --layers 0", "'model.num_layers' must be positive"),
        Case("train --config tiny --out {out} --devices 0", "'train.devices' must be positive"),
        Case("train --config tiny --out {out} data.batch_size=-1", "'data.batch_size' must be"),
        Case("train --config tiny --out {out} train.lr=fast", "train.lr"),
        Case("train --config tiny --out {out} model.latent_dim", "is not of the form key=value"),
        Case("train --config {missing} --out {out}", "config file not found"),
        Case("train --config tiny --out {out} --max-steps 0", "the run has no end"),
        Case("train --config tiny --out {out} --data {missing}", "does not exist"),
        Case("train --config tiny --out {blocked}", "/a-file/sub: Not a directory"),
        Case("train --config tiny --out {out} --resume {missing}", "not found"),
        Case("train --config tiny --out {out} --resume {corrupt}", "truncated or corrupt"),
        Case(
            "train --config tiny --out {out} --resume {vae} --latent 5",
            "model.latent_dim=8 (config: 5)",
        ),
        Case("train --config tiny --out {out} --model cvae --data {folder}", "no attribute file"),
        Case("train --config tiny --out {out} --model segvae --data {folder}", "has none"),
        Case("train --config tiny --out {out} --epochs 1 --max-steps 2", "not allowed with"),
    ],
    "sample": [
        Case("sample {missing} --out {out}", "checkpoint not found"),
        Case("sample {corrupt} --out {out}", "truncated or corrupt"),
        Case("sample {folder} --out {out}", "no checkpoint in"),
        Case("sample {vae} --out {out} --n 0", "argument --n: must be an integer >= 1, got 0"),
        Case("sample {vae} --out {out} --n -2", "got -2"),
        Case("sample {vae} --out {out} --set Smiling=1", "--set needs a cvae run"),
        Case("sample {cvae} --out {out} --set Smilling=1", "did you mean Smiling"),
        Case("sample {cvae} --out {out} --set Smiling=yes", "not of the form Name=number"),
        Case("sample {vae} --out {out} --z {missing}", "--z file not found"),
        Case(
            "sample {vae} --out {out} --z {file}", "is not a latent vector saved by latentcam app"
        ),
        Case("sample {vae} --out {blocked}", "/a-file/sub: Not a directory"),
    ],
    "reconstruct": [
        Case("reconstruct {vae} --data synth --out {out} --n 0", "--n: must be an integer >= 1"),
        Case("reconstruct {vae} --data {missing} --out {out}", "does not exist"),
        Case("reconstruct {segvae} --data {folder} --out {out}", "no part masks"),
        Case("reconstruct {cvae} --data {folder} --out {out}", "no attribute file"),
        Case("reconstruct {vae} --data synth --out {blocked}", "/a-file/sub: Not a directory"),
        Case("reconstruct {vae} --data synth --out {out} --split dev", "invalid choice: 'dev'"),
    ],
    "explain": [
        Case("explain {vae} --out {out} --units 8", "unit 8 is out of range"),
        Case(
            "explain {vae} --out {out} --units -1", "unit -1 is negative; units are numbered from 0"
        ),
        Case("explain {vae} --out {out} --units one", "is not a unit index"),
        Case("explain {vae} --out {out} --layer encoder.block.1", "Did you mean: encoder.blocks.1"),
        Case(
            "explain {vae} --out {out} --layer decoder.nothing", "unknown layer 'decoder.nothing'"
        ),
        Case("explain {vae} --out {out} --n 0", "--n: must be an integer >= 1, got 0"),
        Case("explain {vae} --out {out} --top 0", "--top: must be an integer >= 1, got 0"),
        Case("explain {cvae} --data {folder} --out {out}", "no attribute file"),
        Case("explain {vae} --out {blocked}", "/a-file/sub: Not a directory"),
        Case("explain {vae} --out {out} --method gradcam+", "invalid choice: 'gradcam+'"),
        Case("explain {missing} --out {out}", "checkpoint not found"),
    ],
    "traverse": [
        Case("traverse {vae} --out {out} --units 8", "unit 8 is out of range"),
        Case("traverse {vae} --out {out} --deltas 0.1,x", "is not a comma-separated list"),
        Case("traverse {vae} --out {out} --sigmas ,", "give at least one finite number"),
        Case("traverse {vae} --out {out} --deltas nan", "give at least one finite number"),
        Case("traverse {vae} --out {out} --layer encoder.blocks.7", "unknown layer"),
        Case("traverse {vae} --out {out} --n 0", "--n: must be an integer >= 1, got 0"),
        Case("traverse {cvae} --out {out} --attributes Smilling", "unknown attribute 'Smilling'"),
        Case(
            "traverse {vae} --out {out} --attributes Smiling",
            "attributes are traversed for a cvae run",
        ),
        Case("traverse {vae} --out {blocked}", "/a-file/sub: Not a directory"),
    ],
    "app": [  # each fails before the server starts
        Case("app {missing}", "checkpoint not found"),
        Case("app {corrupt}", "truncated or corrupt"),
        Case("app {vae} --top 0", "--top: must be an integer >= 1, got 0"),
        Case("app {vae} --gallery -1", "--gallery: must be an integer >= 0, got -1"),
        Case("app {vae} --z {missing}", "--z file not found"),
        Case("app {vae} --z {file}", "is not a latent vector saved by latentcam app"),
        Case("app {vae} --layer encoder.blocks.9", "unknown layer"),
        Case("app {vae} --method cam", "invalid choice: 'cam'"),
    ],
    "directions": [
        Case("directions {vae} --out {out} --k 0", "--k: must be an integer >= 1, got 0"),
        Case(
            "directions {vae} --out {out} --max-images 1", "--max-images: must be an integer >= 2"
        ),
        Case("directions {vae} --out {out} --kind nope", "invalid choice: 'nope'"),
        Case("directions {missing} --out {out}", "checkpoint not found"),
        Case("directions {vae} --out {vae}", "is the run folder"),
    ],
    "import": [
        Case("import --from diffusers {missing} --out {out}", "model folder not found"),
        Case("import --from python no_such_module_xyz:make --out {out}", "cannot find the factory"),
        Case("import --from python os:path --out {out}", "the factory 'os:path' raised"),
        Case(
            "import --from diffusers {missing} --out {out} --size 0", "--size: must be an integer"
        ),
        Case("import --from nope {missing} --out {out}", "nope"),
    ],
    "evaluate": [
        Case("evaluate {vae} --out {out}.json --layer encoder.blocks.9", "unknown layer"),
        Case("evaluate {vae} --out {out}.json --n 0", "--n: must be an integer >= 1, got 0"),
        Case("evaluate {vae} --out {blocked}.json", "is a file"),
        Case("evaluate {vae} --out {tmp}", "is a folder"),
        Case("evaluate {vae} --out {out}.json --split dev", "invalid choice: 'dev'"),
        Case("evaluate {corrupt} --out {out}.json", "truncated or corrupt"),
    ],
    "report": [
        Case("report {vae} --out {out} --n 0", "--n: must be an integer >= 1, got 0"),
        Case("report {vae} --out {out} --eval-n 0", "--eval-n: must be an integer >= 1, got 0"),
        Case("report {vae} --out {blocked}", "/a-file is a file, not a folder"),
        Case("report {missing} --out {out}", "checkpoint not found"),
        Case("report {vae} --out {out} --method cam", "invalid choice: 'cam'"),
    ],
    "sweep": [
        Case("sweep --config tiny --out {out} --grid depth=3", "--grid axis 'depth' is unknown"),
        Case("sweep --config tiny --out {out} --grid latent=0", "give positive integers"),
        Case("sweep --config tiny --out {out} --grid size=48", "power of two"),
        Case("sweep --config tiny --out {out} --grid latent=4 --points 3/2", "need 0 <= i < n"),
        Case("sweep --config tiny --out {out} --grid latent=4 --points x", "is not i/n"),
        Case("sweep --config tiny --out {blocked} --grid latent=4", "/a-file/sub: Not a directory"),
        Case("sweep --config tiny --out {out} --grid latent=4 --max-steps 0", "training budget"),
        Case("sweep --config tiny --out {out} --grid latent=4 model.nope=1", "model.nope"),
    ],
    "demo": [
        Case("demo --out {out} --minutes 0", "--minutes: must be a finite number > 0 and <= 10080"),
        Case("demo --out {out} --minutes -1", "got -1"),
        Case(
            "demo --out {out} --n 10",
            "--n: must be an integer from 50 to 100000 (faces to train on)",
        ),
        Case("demo --out {blocked} --minutes 0.01 --n 50", "/a-file/sub: Not a directory"),
    ],
}


@pytest.fixture
def places(
    runs: dict[str, Path], tmp_path: Path, make_data: Any, _session_cache: Path
) -> dict[str, str]:
    (tmp_path / "a-file").write_text("not a folder\n")
    corrupt = tmp_path / "corrupt.ckpt"
    data = (runs["vae"] / "checkpoints" / "last.ckpt").read_bytes()
    corrupt.write_bytes(data[: len(data) // 3])
    return {
        **{name: str(path) for name, path in runs.items()},
        "out": str(tmp_path / "out"),
        "blocked": str(tmp_path / "a-file" / "sub"),
        "file": str(tmp_path / "a-file"),
        "folder": str(make_data.folder(sizes=((32, 32),) * 4).root),
        "corrupt": str(corrupt),
        "missing": str(tmp_path / "nowhere"),
        "tmp": str(tmp_path),
    }


def run_cli(argv: list[str]) -> int:
    """``main(argv)``'s exit status (argparse's own errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def _record(command: str, case: Case, message: str, places: dict[str, str]) -> None:
    """With LATENTCAM_RELIABILITY_TALLY=FOLDER, append the case and its message (paths
    shown as their placeholders) to FOLDER/bad_calls-<worker>.jsonl (for the docs table)."""
    out = tally_file("bad_calls", ".jsonl")
    if out is None:
        return
    for name, path in sorted(places.items(), key=lambda item: -len(item[1])):
        message = message.replace(path, "{" + name + "}")
    with open(out, "a") as fh:
        fh.write(json.dumps({"command": command, "argv": case.argv, "message": message}) + "\n")


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []


@pytest.mark.parametrize(
    ("command", "case"),
    [(command, case) for command, cases in CASES.items() for case in cases],
    ids=[case.argv.replace(" ", "_") for cases in CASES.values() for case in cases],
)
def test_bad_command_line(
    command: str,
    case: Case,
    places: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    _session_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LATENTCAM_CACHE", str(_session_cache))
    argv = [part.format(**places) for part in case.argv.split()]
    if command in ("train", "sweep"):  # keep the synthetic faces of the session's cache
        argv += [f"data.cache_dir={_session_cache}", "data.synth_n=96", "--no-progress"]
    assert run_cli(argv) == 2, argv
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert re.match(rf"latentcam {command}( info)?: error: ", lines[0]), lines[0]
    assert case.says in lines[0], lines[0]
    assert captured.out == ""
    _record(command, case, lines[0], places)
    out = Path(places["out"])
    assert files_under(out) == [] and not Path(f"{out}.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p for p in ("a-file", "corrupt.ckpt", "datasets", "out") if (tmp_path / p).exists()
    )


def test_every_command_has_bad_calls() -> None:
    from latentcam.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) == set(CASES)


# ----------------------------------------------------------------------------- the API


def test_model_forward_rejects_wrong_shapes_and_dtypes(loaded: dict[str, LoadedRun]) -> None:
    model = loaded["vae"].model
    good = torch.rand(2, 3, 32, 32)
    for bad, says in [
        (torch.rand(3, 32, 32), "4-D tensor"),
        (torch.rand(2, 1, 32, 32), "3 (RGB) channels"),
        (torch.rand(2, 32, 32, 3), "3 (RGB) channels"),
        (torch.rand(2, 3, 64, 64), "built for 32x32 images, got 64x64"),
        (torch.rand(2, 3, 32, 16), "got 32x16"),
        ((good * 255).to(torch.uint8), "float in [0, 1], got dtype torch.uint8"),
        (good.numpy(), "must be a torch.Tensor"),
    ]:
        with pytest.raises(InputError, match=says_pattern(says)):
            model(bad)
    assert model(good).mu.shape == (2, 8)


def says_pattern(text: str) -> str:
    return re.escape(text)


def test_cvae_needs_its_condition(loaded: dict[str, LoadedRun]) -> None:
    cvae, vae = loaded["cvae"].model, loaded["vae"].model
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(InputError, match=r"needs cond \(B, 40\)"):
        cvae(x)
    with pytest.raises(InputError, match=r"\(2, 40\).*got \(2, 39\)"):
        cvae(x, torch.zeros(2, 39))
    with pytest.raises(InputError, match=r"got \(1, 40\)"):
        cvae(x, torch.zeros(1, 40))
    with pytest.raises(InputError, match="unconditional and takes no cond"):
        vae(x, torch.zeros(2, 40))
    assert cvae(x, torch.zeros(2, 40)).mu.shape == (2, 8)


def test_latent_cams_bad_units_layers_and_tensors(loaded: dict[str, LoadedRun]) -> None:
    from latentcam.explain.cam import latent_cams

    model = loaded["vae"].model
    x = torch.rand(2, 3, 32, 32)
    for units in ([8], [0, 99]):
        with pytest.raises(InputError, match="out of range"):
            latent_cams(model, x, units=units)
    with pytest.raises(InputError, match="latent unit index must be >= 0, got -1"):
        latent_cams(model, x, units=[-1])
    with pytest.raises(InputError, match="units is empty"):
        latent_cams(model, x, units=[])
    with pytest.raises(
        InputError, match=r"unknown layer 'encoder.block.2'.*Did you mean: encoder\.blocks\.2"
    ):
        latent_cams(model, x, layer="encoder.block.2")
    with pytest.raises(InputError, match=r"Conv layers and blocks: .*encoder\.blocks\.0"):
        latent_cams(model, x, layer="nothing")
    with pytest.raises(
        InputError, match=r"unknown CAM method 'gradcam\+'; choose one of: gradcam, gradcam\+\+"
    ):
        latent_cams(model, x, method="gradcam+")
    with pytest.raises(InputError, match="4-D tensor"):
        latent_cams(model, x[0])
    with pytest.raises(InputError, match="built for 32x32 images, got 64x64"):
        latent_cams(model, torch.rand(2, 3, 64, 64))
    with pytest.raises(InputError, match="dtype torch.uint8"):
        latent_cams(model, (x * 255).to(torch.uint8))
    with pytest.raises(InputError, match=r"needs cond \(B, 40\)"):
        latent_cams(loaded["cvae"].model, x)
    assert latent_cams(model, x, units=[0, 7]).maps.shape[:2] == (2, 2)


@pytest.mark.parametrize("make_bad", ["0..255", "nan"])
def test_latent_cams_rejects_images_outside_0_1(
    loaded: dict[str, LoadedRun], make_bad: str
) -> None:
    from latentcam.explain.cam import latent_cams

    x = torch.rand(2, 3, 32, 32)
    x = x * 255 if make_bad == "0..255" else x.masked_fill(x > 0.5, float("nan"))
    with pytest.raises(InputError, match=r"\[0, 1\]|NaN"):
        latent_cams(loaded["vae"].model, x)


def test_data_size_that_does_not_fit_the_model(loaded: dict[str, LoadedRun]) -> None:
    cfg = loaded["vae"].config
    check_image_size(cfg.model, 32)
    with pytest.raises(InputError, match="built for 32x32 images, but the data is 64x64"):
        check_image_size(cfg.model, 64)
    with pytest.raises(InputError, match="data is 32x24"):
        check_image_size(cfg.model, (32, 24))


def test_checkpoint_that_does_not_fit_the_model(runs: dict[str, Path], tmp_path: Path) -> None:
    """Weights of a K=8 model under a config that says K=5 (the full set of damaged
    checkpoints is in tests/training/test_checkpoint.py)."""
    checkpoint = torch.load(runs["vae"] / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["latentcam"]["config"]["model"]["latent_dim"] = 5
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    with pytest.raises(CheckpointError, match=r"do not fit the vae model.*wrong shape: .*\(8, "):
        load_run(tmp_path / "edited.ckpt")
    with pytest.raises(
        CheckpointError, match="without a segmentation output .*outputs: image.* is needed here"
    ):
        load_run(runs["vae"], needs="segmentation")


def test_sampling_and_traversal_bad_arguments(loaded: dict[str, LoadedRun]) -> None:
    from latentcam.explain.traversal import traverse
    from latentcam.generate import sample

    vae, cvae = loaded["vae"].model, loaded["cvae"].model
    for n in (0, -1):
        with pytest.raises(InputError, match=f"number of samples must be >= 1, got {n}"):
            sample(vae, n)
    with pytest.raises(InputError, match="need a conditional model"):
        sample(vae, 2, {"Smiling": 1.0})
    with pytest.raises(InputError, match="unknown attribute 'smiling'.*did you mean Smiling"):
        sample(cvae, 2, {"smiling": 1.0})
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(InputError, match="out of range"):
        traverse(vae, x, [8], steps=[0.1])
    with pytest.raises(InputError, match="unknown layer"):
        traverse(vae, x, [0], steps=[0.1], layer="encoder.blocks.8")
    with pytest.raises(InputError, match=r"x must be images \(B, 3, H, W\); got \(3, 32, 32\)"):
        traverse(vae, x[0], [0], steps=[0.1])


def test_config_bad_keys_and_sizes() -> None:
    with pytest.raises(ConfigError, match="model.latent_dimm"):
        load_config(overrides=["model.latent_dimm=5"])
    for key, value in [
        ("model.image_size", "0"),
        ("model.latent_dim", "-3"),
        ("data.batch_size", "0"),
    ]:
        with pytest.raises(ConfigError, match=f"'{key}' must be positive, got {value}"):
            load_config(overrides=[f"{key}={value}"])
    with pytest.raises(ConfigError, match="model.kind.*choose one of: vae, cvae, segvae"):
        load_config(overrides=["model.kind=gan"])


def test_data_loading_bad_arguments(make_data: Any, cache_dir: Path) -> None:
    from latentcam.data.dataset import FaceDataset, load_face_data

    root = make_data.folder().root
    for size in (0, -16, 3, 5000, 16.0, True):
        with pytest.raises(InputError, match="image size must be an integer from 4 to 4096"):
            load_face_data(root, size, cache_dir=cache_dir, progress=False)  # type: ignore[arg-type]
    data = load_face_data(root, 16, cache_dir=cache_dir, progress=False)
    with pytest.raises(InputError, match="unknown split 'dev'"):
        FaceDataset(data, "dev")
    with pytest.raises(InputError, match="limit must be >= 0"):
        FaceDataset(data, "all", limit=-1)
    with pytest.raises(DataError, match="binary_mask needs part masks"):
        FaceDataset(data, "all", binary_mask=True)
    with pytest.raises(InputError, match="positions must lie in 0..2"):
        FaceDataset(data, "all").batch([0, 3])


def test_train_on_data_that_does_not_fit_leaves_no_run(
    make_data: Any, tmp_path: Path, _session_cache: Path
) -> None:
    root = make_data.folder(sizes=((32, 32),) * 4).root
    run = tmp_path / "run"
    with pytest.raises(DataError, match="no attribute file"):
        train(tiny(_session_cache, "model.kind=cvae", f"data.path={root}"), run, progress=False)
    assert files_under(run) == []
    shutil.rmtree(run, ignore_errors=True)
