"""``mrenhance completion bash|zsh|fish``: print the shell's tab-completion script.

Completes the commands, their options, shipped model names (``--model``), recipes
(``train``) and task names (``evaluate``), through argcomplete (``pip install
'mrenhance[completion]'``). Install once, e.g. for bash::

    mrenhance completion bash > ~/.local/share/bash-completion/completions/mrenhance

or ``eval "$(mrenhance completion bash)"`` in ``~/.bashrc``; zsh: ``eval "$(mrenhance
completion zsh)"`` in ``~/.zshrc``.
"""

from __future__ import annotations

import argparse

ORDER = 90
SHELLS = ("bash", "zsh", "fish")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "completion",
        help="print the shell's tab-completion script (bash, zsh, fish)",
        description="Print a script that makes the shell complete mrenhance's commands, "
        "options, shipped model names and recipes (needs argcomplete: pip install "
        "'mrenhance[completion]').",
        epilog="examples:\n"
        "  mrenhance completion bash > ~/.local/share/bash-completion/completions/mrenhance\n"
        '  eval "$(mrenhance completion zsh)"        # in ~/.zshrc',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    return p


def run(args: argparse.Namespace) -> int:
    from mrenhance.cli import commands
    from mrenhance.errors import InputError

    try:
        import argcomplete
    except ImportError:
        raise InputError(
            "completion: needs argcomplete (pip install 'mrenhance[completion]')"
        ) from None
    names = " ".join(commands())
    print(f"# mrenhance {args.shell} completion (argcomplete); commands: {names}")
    print(argcomplete.shellcode(["mrenhance"], shell=args.shell))
    return 0
