"""``mrenhance train RECIPE [key=value ...]``: train from a recipe (YAML) with overrides."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mrenhance.cli._options import DEVICE_HELP, add_threads_option

ORDER = 50


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train from a recipe (YAML) with key=value overrides",
        description="Train a recipe. A recipe's train.steps is its paper's (e.g. 500k for "
        "mDCSRN): on a CPU give a budget, --budget 30m, or a few steps, train.steps=20, to "
        "watch a run; --resume continues either.",
        epilog="examples:\n  mrenhance train sr_mdcsrn train.steps=20 --run-dir runs/try   "
        "# a first look, minutes on a CPU\n"
        "  mrenhance train sr_mdcsrn --budget 30m --run-dir runs/b4u4   # stops after 30 min\n"
        "  mrenhance train sr_mdcsrn train.steps=2000 train.patch_size=32\n"
        "  torchrun --nproc_per_node 2 -m mrenhance train sr_mdcsrn --run-dir runs/x\n"
        "  mrenhance train sr_mdcsrn --run-dir runs/x --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", help="a shipped recipe name (sr_mdcsrn) or a YAML path")
    p.add_argument(
        "overrides",
        nargs="*",
        help="key=value over the recipe, e.g. train.steps=20 train.patch_size=32 (default: "
        "none; train.steps defaults to the paper's count)",
    )
    p.add_argument("--run-dir", default=None, help="run folder (default runs/<recipe>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from last.pt")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--stage",
        choices=("supervised", "gan", "all"),
        default="supervised",
        help="which stage to train (default supervised)",
    )
    p.add_argument(
        "--budget",
        type=duration_minutes,
        default=None,
        metavar="TIME",
        help="stop cleanly after this much time, e.g. 30m, 2h, 90s (same as "
        "train.minutes=30); the checkpoint is written and --resume continues (default: none)",
    )
    add_threads_option(p)
    return p


def duration_minutes(text: str) -> float:
    """``30m`` -> 30.0, ``2h`` -> 120.0, ``90s`` -> 1.5, ``45`` -> 45.0 (minutes)."""
    units = {"s": 1 / 60, "m": 1.0, "min": 1.0, "h": 60.0}
    t = text.strip().lower()
    for suffix in sorted(units, key=len, reverse=True):
        if t.endswith(suffix):
            t, factor = t[: -len(suffix)], units[suffix]
            break
    else:
        factor = 1.0
    try:
        value = float(t) * factor
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30m, 2h or 90s, got {text!r}"
        )
    return value


def _recipe_inputs(recipe: str, overrides: list[str]) -> list[Path]:
    """The recipe file and the data files it names; [] when the recipe does not load (then
    training itself reports the problem, with its own message)."""
    from mrenhance.config import load_recipe, recipe_path
    from mrenhance.errors import MrenhanceError

    try:
        path = recipe_path(recipe)
        data: Any = load_recipe(path, list(overrides)).data
    except MrenhanceError:
        return []
    files = data.get("files", []) if isinstance(data, dict) else []
    found = [Path(path)]
    for f in files if isinstance(files, list) else []:
        if isinstance(f, str) and ":" not in f.split("/")[0] or isinstance(f, Path):
            found.append(Path(f))
    return found


def run(args: argparse.Namespace) -> int:
    from mrenhance.io.paths import check_run_folder
    from mrenhance.training import train_recipe

    if args.run_dir:
        check_run_folder(args.run_dir, _recipe_inputs(args.recipe, args.overrides))
    overrides = list(args.overrides)
    if args.budget is not None:
        overrides.append(f"train.minutes={args.budget:g}")
    result = train_recipe(
        args.recipe,
        overrides,
        run_dir=args.run_dir,
        resume=args.resume,
        device=args.device,
        stage=args.stage,
        progress=not args.quiet,
    )
    print(json.dumps(result, indent=2, default=str))
    return 0
