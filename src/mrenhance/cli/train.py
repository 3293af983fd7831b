"""``mrenhance train RECIPE [key=value ...]``: train from a recipe (YAML) with overrides."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ORDER = 50


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train from a recipe (YAML) with key=value overrides",
        epilog="examples:\n  mrenhance train sr_mdcsrn train.steps=2000 train.patch_size=32\n"
        "  torchrun --nproc_per_node 2 -m mrenhance train sr_mdcsrn --run-dir runs/x\n"
        "  mrenhance train sr_mdcsrn --run-dir runs/x --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", help="a shipped recipe name (sr_mdcsrn) or a YAML path")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. train.steps=100")
    p.add_argument("--run-dir", default=None, help="run folder (default runs/<recipe>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from last.pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--stage", choices=("supervised", "gan", "all"), default="supervised")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


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
    result = train_recipe(
        args.recipe,
        args.overrides,
        run_dir=args.run_dir,
        resume=args.resume,
        device=args.device,
        stage=args.stage,
        progress=not args.quiet,
    )
    print(json.dumps(result, indent=2, default=str))
    return 0
