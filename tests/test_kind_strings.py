"""No module branches on a model-kind string; the tools ask the model what it can do.

A kind string ("vae", "cvae", "segvae") says which class to build; what a model can do
(condition, outputs, latent shape) is read from the model through
:mod:`latentcam.models.protocol`, or from a config through
:func:`latentcam.models.registry.capabilities_of`. This test walks the package's syntax
trees and fails where any other module compares against a kind, indexes a table by kind,
or builds such a table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import latentcam
from latentcam.config import MODEL_KINDS

PACKAGE_DIR = Path(latentcam.__file__).resolve().parent

#: The modules that may read a kind string, and why.
ALLOWED = {
    # the registry: which class a kind builds, and its capabilities
    "models/registry.py",
    # the training module: which loss a kind trains with
    "training/module.py",
}


def _is_kind_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in MODEL_KINDS
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_is_kind_literal(element) for element in node.elts)
    return False


def _is_model_kind(node: ast.AST) -> bool:
    """``<anything>.model.kind`` (a config's) or ``model.kind`` (a model's)."""
    if not (isinstance(node, ast.Attribute) and node.attr == "kind"):
        return False
    owner = node.value
    name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return name == "model"


def kind_branches(source: str) -> list[tuple[int, str]]:
    """(line, what) of each comparison against a model kind, lookup by kind, or kind table."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_is_kind_literal(o) or _is_model_kind(o) for o in operands):
                found.append((node.lineno, "compares a model kind"))
        elif isinstance(node, ast.Subscript) and _is_model_kind(node.slice):
            found.append((node.lineno, "looks up by model kind"))
        elif isinstance(node, ast.Dict) and node.keys:
            if all(k is not None and _is_kind_literal(k) for k in node.keys):
                found.append((node.lineno, "a table keyed by model kind"))
        elif isinstance(node, ast.match_case) and _is_kind_literal(
            getattr(node.pattern, "value", ast.Constant(None))
        ):
            found.append((node.lineno, "matches a model kind"))
    return found


def test_no_kind_string_outside_the_registry_and_the_training_module() -> None:
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR).as_posix()
        if relative in ALLOWED:
            continue
        for line, what in kind_branches(path.read_text(encoding="utf-8")):
            offenders.append(f"{relative}:{line}: {what}")
    assert not offenders, (
        "ask the model (latentcam.models.protocol) or capabilities_of(cfg.model) instead:\n"
        + "\n".join(offenders)
    )


def test_the_walk_finds_each_form() -> None:
    source = (
        'a = cfg.model.kind == "cvae"\n'
        'b = kind in ("vae", "cvae")\n'
        "c = KEYS[cfg.model.kind]\n"
        'd = {"vae": 1, "segvae": 2}\n'
        "e = run.config.model.kind != other\n"
        'f = direction.kind == "attribute"\n'
    )
    assert [line for line, _ in kind_branches(source)] == [1, 2, 3, 4, 5]
