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
from pathlib import Path
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


#: Options every command takes, before or after its name (``mrenhance -v enhance ...`` and
#: ``mrenhance enhance ... -v``): (flags, argparse keywords). Before the name they land in
#: ``global_<dest>``, after it in ``<dest>``; :func:`_merge_global_options` joins them.
GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("-v", "--verbose"),
        {
            "dest": "verbose",
            "action": "count",
            "help": "show library warnings and log messages on stderr (-vv: also debug)",
        },
    ),
    (
        ("-q", "--quiet"),
        {
            "dest": "quiet",
            "action": "store_true",
            "help": "no progress bars and no info lines; results (tables, JSON) and "
            "one-line errors are still printed",
        },
    ),
    (
        ("--log-file",),
        {
            "dest": "log_file",
            "metavar": "PATH",
            "help": "append the log (library warnings, our messages, errors; time-stamped) "
            "to PATH, whatever -q/-v show (default: no log file)",
        },
    ),
    (
        ("--debug",),
        {
            "dest": "debug",
            "action": "store_true",
            "help": "show the full traceback of an internal error (also MRENHANCE_DEBUG=1)",
        },
    ),
)


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The :data:`GLOBAL_OPTIONS` on ``parser`` (those it does not define itself).

    Below the top level their default is SUPPRESS: a subcommand's namespace is copied over
    its parent's, and a default there would erase a flag given before the name.
    """
    group = None
    for flags, kwargs in GLOBAL_OPTIONS:
        flags = tuple(f for f in flags if f not in parser._option_string_actions)
        if not flags or not any(f.startswith("--") for f in flags):
            continue  # the command defines this option itself (e.g. models -v)
        if group is None:
            group = (
                parser
                if top
                else parser.add_argument_group("global options (also before the command name)")
            )
        options = dict(kwargs)
        if top:
            options["dest"] = f"global_{options['dest']}"
        else:
            options["default"] = argparse.SUPPRESS
        group.add_argument(*flags, **options)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser`` (subcommands, and theirs: ``simulate kspace``)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases once
                found += [child, *_subparsers(child)]
    return found


def build_parser() -> argparse.ArgumentParser:
    """The ``mrenhance`` parser with one subparser per registered command."""
    from mrenhance import __version__

    parser = OneLineParser(
        prog="mrenhance",
        description="Deep-learning enhancement of MR images (NIfTI or DICOM). The global "
        "options work before or after the command name.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mrenhance {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for command in commands().values():
        p = command.add_parser(sub)
        p.set_defaults(func=command.run)
    for p in _subparsers(parser):
        _add_global_options(p, top=False)
    from mrenhance.cli._completion import add_completers

    add_completers(parser)
    return parser


def _merge_global_options(args: argparse.Namespace) -> int:
    """Join the global options given before and after the command name into ``args.quiet``,
    ``args.debug``, ``args.log_file``; returns the verbosity (-v count)."""
    from mrenhance.errors import InputError

    verbosity = int(getattr(args, "verbose", 0) or 0) + int(args.global_verbose or 0)
    args.quiet = bool(getattr(args, "quiet", False) or args.global_quiet)
    args.debug = bool(getattr(args, "debug", False) or args.global_debug)
    after = getattr(args, "log_file", None)
    if after is not None and args.global_log_file is not None and after != args.global_log_file:
        raise InputError(f"--log-file given twice ({args.global_log_file}, {after}): give one")
    args.log_file = after if after is not None else args.global_log_file
    if args.quiet and verbosity:
        raise InputError("-q and -v ask for opposite things: give one of them")
    return verbosity


def _command_inputs(args: argparse.Namespace) -> list[Path]:
    """The files and folders a command reads, as far as its options name them (for the
    ``--log-file`` check): input positionals and options, a shipped model's files, a
    shipped recipe."""
    found: list[Path] = []
    for key in (
        "inputs",
        "input",
        "file",
        "folder",
        "weights",
        "prediction",
        "reference",
        "mask",
        "regions",
        "aif_mask",
        "brain_mask",
        "model",
        "recipe",
    ):
        value = getattr(args, key, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str | os.PathLike) and str(item):
                found.append(Path(item))
    from mrenhance.errors import MrenhanceError

    for key, resolve in (("model", "weights"), ("recipe", "recipe")):
        value = getattr(args, key, None)
        if not isinstance(value, str) or os.path.exists(value):
            continue
        with contextlib.suppress(MrenhanceError, OSError):
            if resolve == "weights":
                from mrenhance.models.weights import resolve_weights

                w = resolve_weights(value)
                found += [w, w.with_suffix(".json")]
            else:
                from mrenhance.config import recipe_path

                found.append(Path(recipe_path(value)))
    return found


def _check_log_file(args: argparse.Namespace) -> None:
    """A ``--log-file`` that can be written and is none of the command's inputs (nor inside
    an input folder), checked before any work: the same rules as every output."""
    if args.log_file is None:
        return
    from mrenhance.errors import InputError
    from mrenhance.io.atomic import check_file_name
    from mrenhance.io.paths import check_not_input, same_path

    path = check_file_name(args.log_file)
    check_not_input(path, _command_inputs(args), what="log file")
    for key in ("output", "summary", "run_dir", "dest"):
        value = getattr(args, key, None)
        if isinstance(value, str) and value and same_path(path, value):
            raise InputError(f"{path}: log file is also the command's output; choose another")
    if path.is_dir():
        raise InputError(f"{path}: log file is a folder")
    if not path.parent.is_dir():
        raise InputError(f"{path}: log file folder {path.parent} does not exist")


def _set_threads(args: argparse.Namespace) -> None:
    """``--threads N`` (enhance, evaluate, train): PyTorch's intra- and inter-op threads."""
    threads = getattr(args, "threads", None)
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)
    try:  # settable once, before any parallel work; a second main() in one process can't
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        from mrenhance.logs import LOGGER

        LOGGER.debug("--threads %d: inter-op threads already fixed in this process", threads)


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
        from mrenhance.cli._completion import autocomplete

        autocomplete(parser)  # only under the shell's completion (argcomplete's env)
        args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    from mrenhance.errors import MrenhanceError

    try:
        verbosity = _merge_global_options(args)
        _check_log_file(args)
    except MrenhanceError as exc:
        _say(f"mrenhance: error: {exc}")
        return EXIT_USAGE
    with handle_signals(), cli_logging(-1 if args.quiet else verbosity, args.log_file):
        from mrenhance.logs import FILE_ONLY, LOGGER

        words = sys.argv[1:] if argv is None else list(argv)
        LOGGER.info("mrenhance %s", " ".join(words), extra=FILE_ONLY)
        return _run(args)


def _say(text: str, exc: BaseException | None = None) -> None:
    """One line on stderr, and in the log file (with ``exc``'s traceback under --debug)."""
    from mrenhance.errors import printable
    from mrenhance.logs import FILE_ONLY, LOGGER

    line = printable(" ".join(text.split()))
    print(line, file=sys.stderr)
    LOGGER.error("%s", line, exc_info=exc, extra=FILE_ONLY)


def _run(args: argparse.Namespace) -> int:
    from mrenhance.errors import MrenhanceError
    from mrenhance.signals import Interrupted

    try:
        _set_threads(args)
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
            from mrenhance.logs import FILE_ONLY, LOGGER

            LOGGER.error("internal error", exc_info=exc, extra=FILE_ONLY)
        else:
            _say(  # the log file, if any, holds the traceback
                f"mrenhance: internal error: {type(exc).__name__}: {exc} "
                "(run with --debug for the traceback and please report it)",
                exc,
            )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
