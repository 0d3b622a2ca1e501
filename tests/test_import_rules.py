"""The package's imports only go down the layers (docs/design.md), and form no cycle.

Every import statement counts, lazy ones inside functions included, read with `ast` (nothing is
imported). Layers, top first:

    entry     cli, __main__, web
    services  run, training, metrics, translate, export
    families  families (each family's folder, the contract, the registry)
    shared    conditioning, losses, nn, data, text
    ground    config, config_docs, runtime, rundir, imageio, errors, progress

A module may import its own layer or a lower one, with these extra rules: metrics and run never
import training; inside families, a family's folder imports only itself, the contract and the
ground/shared layers (never another family, never the registry).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "genforge"

LAYERS = {
    "entry": ("cli", "__main__", "web"),
    "services": ("run", "training", "metrics", "translate", "export"),
    "families": ("families",),
    "shared": ("conditioning", "losses", "nn", "data", "text"),
    "ground": ("config", "config_docs", "runtime", "rundir", "imageio", "errors", "progress"),
}
ORDER = ["ground", "shared", "families", "services", "entry"]


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__)."""
    out = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        is_package = name.endswith(".__init__")
        out[name.removesuffix(".__init__")] = (path, is_package)
    return out


def imports_of(name: str, path: Path, is_package: bool, known: dict) -> set[str]:
    """The package modules `name` imports (the longest known prefix of each target)."""
    base = name if is_package else name.rsplit(".", 1)[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                prefix = ".".join(parts[:len(parts) - node.level + 1])
                module = prefix + ("." + node.module if node.module else "")
            else:
                module = node.module or ""
            targets += [module + "." + alias.name for alias in node.names] + [module]
        elif isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
    found = set()
    for target in targets:
        if not target.startswith(PACKAGE + ".") and target != PACKAGE:
            continue
        while target and target not in known:
            target = target.rsplit(".", 1)[0] if "." in target else ""
        if target and target not in (name, PACKAGE):
            found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, is_package, known) for name, (path, is_package) in known.items()}


def layer(module: str) -> str:
    top = module.split(".")[1] if "." in module else ""
    for name, tops in LAYERS.items():
        if top in tops:
            return name
    raise AssertionError(f"{module} is in no layer; add its top-level name to LAYERS and docs/design.md")


def family_folder(module: str) -> str | None:
    """'genforge.families.gan.step' -> 'gan'; None for the contract, registry and package."""
    parts = module.split(".")
    if len(parts) >= 4 and parts[1] == "families":
        return parts[2]
    return None


def violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in g.items():
        if module == PACKAGE:
            continue
        source_layer = layer(module)
        for target in targets:
            target_layer = layer(target)
            if ORDER.index(target_layer) > ORDER.index(source_layer):
                bad.append(f"{module} ({source_layer}) imports {target} ({target_layer}), a higher layer")
            top, target_top = module.split(".")[1], target.split(".")[1]
            if top in ("metrics", "run") and target_top == "training":
                bad.append(f"{module} imports {target}: metrics and run never import training")
            folder = family_folder(module)
            if folder is not None and target_top == "families":
                other = family_folder(target)
                if target == f"{PACKAGE}.families.registry" or (other is not None and other != folder):
                    bad.append(f"{module} imports {target}: a family imports only itself and the contract")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in g:
        if v not in index:
            strong(v)
    return out


def test_imports_only_go_down():
    assert violations(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_config_and_the_ground_floor_name_no_family():
    g = graph()
    for module, targets in g.items():
        if module != PACKAGE and layer(module) == "ground":
            assert not [t for t in targets if t.startswith(f"{PACKAGE}.families")], module


def test_training_loop_names_no_family_or_network():
    text = (SRC / PACKAGE / "training" / "loop.py").read_text(encoding="utf-8").lower()
    for word in ("gan", "vae", "pix2pix", "generator", "discriminator"):
        assert not [w for w in _words(text) if w == word], f"training/loop.py names {word!r}"


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-z0-9]+", text)


# The checker itself must be able to fail: a fake package with a downward violation and a cycle.
@pytest.fixture
def fake_graph():
    return {
        "genforge.config": {"genforge.families.gan.step"},          # ground imports a family
        "genforge.metrics.evaluate": {"genforge.training.loop"},    # metrics imports training
        "genforge.families.gan.step": {"genforge.families.vae.step", "genforge.config"},  # another family
        "genforge.families.vae.step": set(),
        "genforge.training.loop": {"genforge.metrics.evaluate"},
    }


def test_checker_reports_each_kind_of_violation(fake_graph):
    found = violations(fake_graph)
    assert any("genforge.config (ground) imports genforge.families.gan.step" in v for v in found)
    assert any("metrics and run never import training" in v for v in found)
    assert any("a family imports only itself" in v for v in found)


def test_checker_finds_cycles(fake_graph):
    assert sorted(cycles(fake_graph)) == [["genforge.config", "genforge.families.gan.step"],
                                          ["genforge.metrics.evaluate", "genforge.training.loop"]]


def test_import_genforge_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, genforge; assert 'torch' not in sys.modules, 'torch was imported'; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_only_the_cli_imports_the_web_app():
    """genforge.web is an entry point (it needs the optional web extra): the library never imports it."""
    for module, targets in graph().items():
        if module.split(".")[1:2] in (["web"], ["cli"]):
            continue
        assert not [t for t in targets if t.split(".")[1:2] == ["web"]], f"{module} imports genforge.web"
