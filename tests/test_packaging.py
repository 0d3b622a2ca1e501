"""Packaging: every third-party package the library imports is declared, and the licence file matches."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "PyYAML", "sklearn": "scikit-learn"}


def imported_top_level_packages() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "genforge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("genforge", "__future__")}


def test_every_imported_package_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The base dependencies and the optional extras (web, onnx, ...), whose imports are guarded.
    dependencies = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    declared = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower() for dep in dependencies}
    imported = imported_top_level_packages()
    assert "matplotlib" in imported  # the report's training curves
    missing = {DISTRIBUTION.get(n, n).lower() for n in imported} - declared
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_licence_file_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the genforge authors" in text


def test_every_declared_package_is_pinned_in_constraints():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {line.split("==")[0].strip().lower() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    for dep in project["dependencies"] + project["optional-dependencies"]["test"]:
        name = dep.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        assert name in pins, f"{name} has no pin in constraints.txt"
