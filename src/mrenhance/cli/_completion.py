"""Shell completion through argcomplete (the optional ``[completion]`` extra).

:func:`add_completers` names what a value can be (shipped model names, recipes, tasks,
files); :func:`autocomplete` answers the shell when it asks (``_ARGCOMPLETE`` in the
environment) and is a no-op otherwise, or when argcomplete is not installed. The script
that makes the shell ask is printed by ``mrenhance completion bash|zsh|fish``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["add_completers", "autocomplete"]


def _model_names(prefix: str, **_: Any) -> list[str]:
    from mrenhance.models.weights import list_shipped_weights

    names = [card["name"] for card in list_shipped_weights()]
    return [n for n in names if n.startswith(prefix)] or _files(prefix, (".safetensors",))


def _recipe_names(prefix: str, **_: Any) -> list[str]:
    from mrenhance.config import list_recipes

    names = list(list_recipes())
    return [n for n in names if n.startswith(prefix)] or _files(prefix, (".yaml", ".yml"))


def _task_names(prefix: str, **_: Any) -> list[str]:
    from mrenhance.tasks import list_tasks

    return [t.name for t in list_tasks() if t.name.startswith(prefix)]


def _files(prefix: str, suffixes: tuple[str, ...]) -> list[str]:
    folder, _, start = prefix.rpartition("/")
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return []
    out = []
    for name in entries:
        path = f"{folder}/{name}" if folder else name
        if not name.startswith(start):
            continue
        if os.path.isdir(path):
            out.append(path + "/")
        elif name.endswith(suffixes):
            out.append(path)
    return sorted(out)


_BY_DEST = {"model": _model_names, "recipe": _recipe_names, "task": _task_names}


def add_completers(parser: argparse.ArgumentParser) -> None:
    """Attach value completers to every parser below ``parser`` (harmless without
    argcomplete: it is an attribute argparse ignores)."""
    from mrenhance.cli import _subparsers

    for p in _subparsers(parser):
        for action in p._actions:
            completer = _BY_DEST.get(action.dest)
            if completer is not None and not action.choices:
                action.completer = completer  # type: ignore[attr-defined]


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer a completion request from the shell (argcomplete protocol), else return."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:  # the shell script came from an install with the extra
        return
    argcomplete.autocomplete(parser)
