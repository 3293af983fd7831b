"""``mrenhance models [NAME]``: registered networks, their sizes and shipped weights.

``mrenhance models NAME`` shows one shipped model (or a ``.safetensors`` path, or a
registered architecture): the defaults ``enhance`` takes from its card (tiling, patch size,
overlap, blend, normalisation), how it was trained and what it scored. Descriptions are
never cut.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mrenhance.cli._options import say

ORDER = 20


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models",
        help="list registered models and shipped weights; NAME: one model's card defaults",
        epilog="examples:\n  mrenhance models\n  mrenhance models mdcsrn-b4u4   "
        "# the tiling, normalisation and metrics enhance uses by default\n"
        "  mrenhance models runs/mine/mine.safetensors --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "name",
        nargs="?",
        default=None,
        metavar="NAME",
        help="a shipped model, a .safetensors path or a registered network (default: list all)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print shipped metrics (and log messages, as the global -v)",
    )
    p.add_argument("--json", action="store_true", help="print the models and shipped cards as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    if args.name:
        return _show_one(args)
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
    say(args, "\n'mrenhance models NAME': a model's enhance defaults (tiling, normalisation)")
    return 0


def card_summary(card: Any) -> dict[str, Any]:
    """What ``enhance`` takes from ``card`` by default, and where the model came from."""
    inference = card.inference_defaults()
    training = card.training or {}
    metrics = card.metrics or {}
    return {
        "name": card.name,
        "task": card.task,
        "architecture": card.architecture.get("name"),
        "parameters": card.parameters,
        "paper": card.paper,
        "enhance_defaults": {
            "tiling": inference.get("tiling", "fixed"),
            "patch_size": inference.get("patch_size"),
            "overlap": inference.get("overlap"),
            "blend": inference.get("blend"),
            **{
                k: v
                for k, v in inference.items()
                if k not in ("tiling", "patch_size", "overlap", "blend")
            },
            "normalisation": card.normalisation.to_dict(),
        },
        "training": {
            k: training[k]
            for k in ("recipe", "steps", "patch_size", "batch_size", "device", "seconds", "stage")
            if k in training
        },
        "test_protocol": metrics.get("test_protocol"),
        "test": metrics.get("test"),
        "limitations": list(getattr(card, "limitations", [])),
    }


def _show_one(args: argparse.Namespace) -> int:
    from mrenhance.errors import MrenhanceError
    from mrenhance.models.registry import get_model_info
    from mrenhance.models.weights import read_card, resolve_weights

    try:
        doc = card_summary(read_card(resolve_weights(args.name)))
    except MrenhanceError as not_shipped:
        try:
            info = get_model_info(args.name)
        except MrenhanceError:
            raise not_shipped from None
        doc = {
            "name": info.name,
            "registered": True,
            "task": info.task,
            "dims": info.spatial_dims,
            "description": info.description,
            "paper": info.paper,
            "defaults": dict(info.defaults),
            "shipped_weights": None,
        }
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    if doc.get("registered"):
        print(
            f"{doc['name']}: registered {doc['dims']}D network for {doc['task']}, "
            "no shipped weights of this name"
        )
        for key in ("description", "paper", "defaults"):
            print(f"  {key:<12} {doc[key]}")
        return 0
    print(
        f"{doc['name']}  ({doc['task']}, {doc['architecture']}, {doc['parameters']:,} parameters)"
    )
    print(f"  paper        {doc['paper']}")
    print("  enhance defaults (override with --patch-size, --overlap, --blend):")
    for key, value in doc["enhance_defaults"].items():
        if key == "tiling" and value == "exact":
            value = (
                "exact (halo = receptive field; tile size planned per volume within --max-memory)"
            )
        print(f"    {key:<12} {value}")
    print(f"  training     {json.dumps(doc['training'], default=str)}")
    if doc["test_protocol"]:
        print(f"  test basis   {doc['test_protocol']}")
    if doc["test"]:
        print(f"  test         {json.dumps(doc['test'], default=str)}")
    for i, text in enumerate(doc["limitations"]):
        print(f"  {'limitations' if i == 0 else '':<12} {text}")
    return 0
