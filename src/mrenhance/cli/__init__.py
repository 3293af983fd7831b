"""The ``mrenhance`` command line: a thin layer over the library, one module per command.

Every user error (bad file, bad option, existing output) is printed as one line
``mrenhance: error: <message>`` and exits with code 2; nothing is written in that case.
Argparse's own errors follow the same rule (one line, no usage dump; ``--help`` is full).
An internal error (a bug) prints one line and exits 1 (``--debug`` shows the traceback).

Commands are found by registration, not by a central list:

- every public module of this package (``mrenhance/cli/<name>.py``) with
  ``add_parser(subparsers)`` and ``run(args) -> int`` is a command named after the module
  (or its ``NAME``); ``ORDER`` sorts ``--help``;
- a task may add its own commands: its ``cli_commands`` attribute (module or class) lists
  dotted module names with the same two functions, e.g. ``cli_commands =
  ("mrenhance.tasks.dsc_cli",)`` gives ``mrenhance perfusion ...`` when that module's
  ``NAME = "perfusion"``;
- other packages register through the ``mrenhance.commands`` entry-point group, and
  Python code can call :func:`register_command` before :func:`main`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["EXIT_USAGE", "build_parser", "commands", "main", "register_command"]

EXIT_USAGE = 2
EXAMPLES = """examples:
  mrenhance info t1.nii.gz
  mrenhance models
  mrenhance enhance t1_lr.nii.gz -o t1_sr.nii.gz --model mdcsrn-b4u4
  mrenhance enhance scans/ -o out/ --model mdcsrn-b4u4 --summary out/summary.json
  mrenhance simulate kspace t1.nii.gz -o t1_lr.nii.gz --factors 2,2,1
  mrenhance train sr_mdcsrn train.steps=2000 train.patch_size=32 --run-dir runs/b4u4
  mrenhance evaluate sr_t1 -o eval/ --models tricubic,mdcsrn-b4u4
  mrenhance evaluate --prediction sr.nii.gz --reference hr.nii.gz --mask brain.nii.gz
  mrenhance demo --output demo_output
"""

_REGISTERED: dict[str, Any] = {}


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line ``mrenhance: error: ...``, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"mrenhance: error: {' '.join(message.split())}\n")


def register_command(command: Any, name: str | None = None) -> None:
    """Add a command: a module or object with ``add_parser(subparsers)`` and ``run(args)``.

    ``name`` defaults to its ``NAME`` attribute or the module's last name component.
    """
    for attr in ("add_parser", "run"):
        if not callable(getattr(command, attr, None)):
            raise TypeError(f"{command!r}: a command needs add_parser(subparsers) and run(args)")
    _REGISTERED[name or _command_name(command)] = command


def _command_name(command: Any) -> str:
    name = getattr(command, "NAME", None) or getattr(command, "__name__", "").rsplit(".", 1)[-1]
    if not name:
        raise TypeError(f"{command!r}: a command needs a NAME")
    return name.replace("_", "-")


def _builtin_modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]


def _task_modules() -> list[ModuleType]:
    """Command modules named by the registered tasks' ``cli_commands``."""
    from mrenhance import tasks

    found = []
    for task in tasks.list_tasks():
        for item in getattr(task, "cli_commands", ()) or ():
            found.append(importlib.import_module(item) if isinstance(item, str) else item)
    return found


def _entry_point_commands() -> list[Any]:
    from importlib.metadata import entry_points

    return [ep.load() for ep in entry_points(group="mrenhance.commands")]


def commands() -> dict[str, Any]:
    """Every command by name: built-in modules, tasks' ``cli_commands``, entry points and
    :func:`register_command`, sorted by ``ORDER`` (default 100) then name."""
    found: dict[str, Any] = {}
    for command in [*_builtin_modules(), *_task_modules(), *_entry_point_commands()]:
        name = _command_name(command)
        if name in found and found[name] is not command:
            raise RuntimeError(f"two commands named {name!r}: {found[name]!r} and {command!r}")
        found[name] = command
    found.update(_REGISTERED)
    return dict(sorted(found.items(), key=lambda kv: (getattr(kv[1], "ORDER", 100), kv[0])))


def build_parser() -> argparse.ArgumentParser:
    """The ``mrenhance`` parser with one subparser per registered command."""
    from mrenhance import __version__

    parser = OneLineParser(
        prog="mrenhance",
        description="Deep-learning enhancement of MR images (NIfTI or DICOM).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mrenhance {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument(
        "-v",
        "--verbose",
        dest="verbose_global",
        action="count",
        default=0,
        help="show library warnings and log messages (-vv: debug)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for command in commands().values():
        p = command.add_parser(sub)
        if "--verbose" not in p._option_string_actions:
            p.add_argument(
                "-v",
                "--verbose",
                action="count",
                default=0,
                help="show library warnings and log messages (-vv: debug)",
            )
        p.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 some batch items failed or an internal
    error, 2 user error)."""
    from mrenhance.logs import cli_logging
    from mrenhance.runtime import tune_allocator
    from mrenhance.signals import handle_signals

    tune_allocator()
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name never crashes a print
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    with handle_signals(), cli_logging(0):  # a warning while parsing stays hidden too
        parser = build_parser()
        args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    verbosity = int(getattr(args, "verbose", 0) or 0) + int(args.verbose_global or 0)
    with handle_signals(), cli_logging(verbosity):
        return _run(args)


def _say(text: str) -> None:
    from mrenhance.errors import printable

    print(printable(" ".join(text.split())), file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from mrenhance.errors import MrenhanceError
    from mrenhance.signals import Interrupted

    try:
        return int(args.func(args) or 0)
    except MrenhanceError as exc:
        _say(f"mrenhance: error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # SIGINT or SIGTERM (mrenhance.signals)
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        _say(f"mrenhance: interrupted by {name}; no partial output was left")
        return exc.exit_code if isinstance(exc, Interrupted) else 130
    except MemoryError:
        _say("mrenhance: error: out of memory (try a smaller --patch-size)")
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line unless --debug
        if args.debug or os.environ.get("MRENHANCE_DEBUG"):
            traceback.print_exc()
        else:
            _say(
                f"mrenhance: internal error: {type(exc).__name__}: {exc} "
                "(run with --debug for the traceback and please report it)"
            )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
