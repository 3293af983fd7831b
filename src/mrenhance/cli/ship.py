"""``mrenhance ship``: evaluate trained weights on their task's held-out data and publish them."""

from __future__ import annotations

import argparse

from mrenhance.cli._options import say

ORDER = 55


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ship",
        help="evaluate weights through their task's protocol and publish them with their card",
        description="Runs the task's evaluation protocol (held-out data, the task's baselines) "
        "on WEIGHTS through the same code as 'enhance', writes the numbers, the protocol and "
        "the provenance into the model card, and copies the weights byte for byte (same "
        "sha256) with the card into --dest.",
        epilog="examples:\n  mrenhance ship runs/b4u4/mdcsrn-b4u4.safetensors --dest shipped/\n"
        "  mrenhance ship runs/b4u4/mdcsrn-b4u4.safetensors --note '1500 CPU steps'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("weights", help="a .safetensors file with its .json card beside it")
    p.add_argument(
        "--dest",
        default=None,
        help="destination folder (default: the package's shipped weights folder)",
    )
    p.add_argument("--note", default="", help="free text for the card's provenance (default: none)")
    p.add_argument(
        "--limitation",
        action="append",
        default=None,
        metavar="TEXT",
        help="where the model must not be trusted, for the card's limitations (repeatable; "
        "default: those of WEIGHTS' card)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace a shipped model")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mrenhance.io.paths import check_not_input
    from mrenhance.models.weights import resolve_weights, shipped_weights_dir
    from mrenhance.report.tables import format_markdown
    from mrenhance.shipping import ship_weights

    weights = resolve_weights(args.weights)
    dest = Path(args.dest) if args.dest else shipped_weights_dir()
    if dest.resolve() != weights.parent.resolve():
        # publishing next to itself is a re-evaluation; anywhere else the copy must not
        # land on an input (e.g. --dest pointing at the run's own card)
        for target in (dest / weights.name, dest / weights.with_suffix(".json").name):
            check_not_input(target, [weights, weights.with_suffix(".json")], what="ship output")
    card, rows = ship_weights(
        weights,
        dest=dest,
        note=args.note,
        device=args.device,
        overwrite=args.overwrite,
        limitations=args.limitation,
    )
    print(format_markdown(rows))
    say(args, f"shipped {dest / (card.name + '.safetensors')} ({card.metrics['test_protocol']})")
    return 0
