"""``mrenhance models``: registered networks, their sizes and shipped weights."""

from __future__ import annotations

import argparse
import json

ORDER = 20


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list registered models and shipped weights")
    p.add_argument("-v", "--verbose", action="store_true", help="also print shipped metrics")
    p.add_argument("--json", action="store_true", help="print the models and shipped cards as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from mrenhance.models import list_models
    from mrenhance.models.complexity import count_parameters
    from mrenhance.models.registry import create_model
    from mrenhance.models.weights import list_shipped_weights

    shipped_by_name = {c["name"]: c for c in list_shipped_weights()}
    rows = []
    from mrenhance.errors import ConfigError

    for info in list_models():
        try:
            params = f"{count_parameters(create_model(info.name)):,}"
        except ConfigError:  # e.g. vgg19-features: built only from the user's weights file
            params = "needs weights"
        names = [n for n, c in shipped_by_name.items() if c["architecture"]["name"] == info.name]
        rows.append(
            (
                info.name,
                info.task,
                f"{info.spatial_dims}D",
                params,
                ", ".join(names) or "-",
                info.description,  # whole: a cut description misleads
            )
        )
    if args.json:
        keys = ("model", "task", "dims", "parameters", "shipped_weights", "description")
        doc = {
            "models": [dict(zip(keys, r, strict=True)) for r in rows],
            "shipped": {n: c.to_dict() if hasattr(c, "to_dict") else c
                        for n, c in shipped_by_name.items()},
        }  # fmt: skip
        print(json.dumps(doc, indent=2, default=str))
        return 0
    header = ("model", "task", "dims", "parameters", "shipped weights", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if args.verbose:
        for name, card in shipped_by_name.items():
            print(f"\n{name}: {json.dumps(card.get('metrics', {}), indent=None)}")
    return 0
