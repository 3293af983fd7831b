"""Tasks: what an input and a target are for each paper, how pairs are made, its metrics.

Each task module exposes ``TASK`` (its name), ``prepare_input(volume) -> (array, ctx)``,
``restore_output(array, ctx) -> array`` (used by whole-volume enhancement), and
``build_training(data_cfg, patch_size, seed=..., source=...) -> (dataset, val_fn, subjects)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mrenhance.errors import ConfigError

TASKS: dict[str, str] = {
    "sr_t1": "mrenhance.tasks.sr_t1",
}


def get_task(name: str) -> ModuleType:
    """The task module registered under ``name`` (ConfigError listing the known ones)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return importlib.import_module(TASKS[name])
