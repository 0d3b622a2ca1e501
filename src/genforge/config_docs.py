"""Every setting, documented from the config dataclasses themselves (`genforge info --settings`).

Each field of a config section carries its docstring as the string literal after it (PEP 257's
attribute docstrings); they are read from the source with `ast`, so the list can never go stale.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap

from .config import PRESETS, SECTIONS


def field_docstrings(cls: type) -> dict[str, str]:
    """{field name: the string literal that follows its definition in the class body}."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def settings() -> list[tuple[str, str, str, str]]:
    """(section.key, type, default, docstring) for every setting of every section."""
    rows = []
    for section, cls in SECTIONS.items():
        docs = field_docstrings(cls)
        hints = {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
                 for f in dataclasses.fields(cls)}
        defaults = cls()
        for f in dataclasses.fields(cls):
            rows.append((f"{section}.{f.name}", hints[f.name], repr(getattr(defaults, f.name)), docs.get(f.name, "")))
    return rows


def format_settings(width: int = 100) -> str:
    lines = ["Every setting (--set SECTION.KEY=VALUE, or a section in --config FILE): name, type, default.", ""]
    for name, kind, default, doc in settings():
        lines.append(f"{name}  ({kind}, default {default})")
        lines.extend(textwrap.wrap(doc, width, initial_indent="    ", subsequent_indent="    ") or ["    (undocumented)"])
    return "\n".join(lines)


def preset_settings(name: str) -> dict:
    """A preset's own settings (what it changes from the defaults), as nested dicts."""
    from .errors import GenforgeError

    if name not in PRESETS:
        raise GenforgeError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
