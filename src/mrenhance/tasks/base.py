"""The task protocol: what every paper's method says about its data, in one shape.

A task is a class registered with :func:`register_task`. The engines (training, tiled
inference, shipping, evaluation, the demo and the CLI) only ever talk to a task through
these members, so adding a method means writing one module in ``mrenhance/tasks/``:

=====================  ==================================================================
``name``               registry key, e.g. ``"sr_t1"``; model cards and recipes name it
``spatial_dims``       2 (slice-wise networks) or 3
``input_kind``         :class:`InputKind`: a 3D image, a 4D series with timing, a DWI with
                       its gradient table, or repeated ASL label/control pairs
``data_defaults``      the recipe ``data:`` keys and their defaults
``data_config``        validate a recipe's ``data`` section (one-line ConfigError)
``preprocessing``      the card's normalisation rule and training voxel size
``training_data``      :class:`TrainingData`: a patch dataset yielding dict samples
                       (``inputs``, ``target``, optional ``mask``; targets may be re-drawn
                       per sample), a validation function and the subjects
``check_input``        refuse a Volume this task cannot take (one-line InputError)
``adapts_voxel_size``  True when ``prepare`` itself brings any voxel size to the card's
                       (``enhance`` then neither warns about it nor ``--resample`` s)
``prepare``            Volume -> (network input array, context) using the card's rules
``restore``            network output -> Volume, possibly on another grid
``baselines``          classical methods of the paper, by name
``evaluate``           the paper's evaluation protocol -> rows of metrics
``example_input``      a small valid input Volume (used by the conformance test)
``cli_commands``       optional extra CLI command modules (e.g. ``perfusion``)
``run_network``        optional ``(model, array, plan, **infer_options) -> array``: how the
                       network meets the prepared array (default: one tiled ``infer``)
``adaptation_pairs``   optional: self-supervised pairs from one input for ``enhance --adapt``
                       (:class:`mrenhance.engine.adapt.AdaptationPairs`)
=====================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

import numpy as np

from mrenhance.errors import ConfigError, InputError
from mrenhance.volume import Volume

__all__ = [
    "InputKind",
    "Task",
    "TrainingData",
    "get_task",
    "list_tasks",
    "register_task",
    "require_3d",
    "require_ndim",
    "require_finite",
]


class InputKind(str, Enum):
    """What a task's input Volume holds."""

    IMAGE_3D = "3D image (x, y, z)"
    SERIES_4D = "4D series with timing (x, y, z, t)"
    DWI = "4D DWI with its gradient table (x, y, z, n) + b-values/b-vectors"
    ASL_PAIRS = "repeated ASL label/control pairs (x, y, z, 2n)"


@dataclass
class TrainingData:
    """What a recipe's ``data`` section becomes for training.

    dataset : a torch Dataset of dict samples ``{"inputs": (C, *patch), "target": (C', *patch'),
        "mask": optional}``.
    validate : callable(model) -> {"psnr": ..., ...} on held-out validation data.
    subjects : the loaded subjects (for evaluation after training and for tests).
    """

    dataset: Any
    validate: Callable[[Any], dict[str, float]]
    subjects: list[Any] = field(default_factory=list)

    def __iter__(self):  # (dataset, val_fn, subjects), as train_recipe unpacks it
        return iter((self.dataset, self.validate, self.subjects))


class Task:
    """Base class of a task; subclasses fill the members listed in the module docstring."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    spatial_dims: ClassVar[int] = 3
    input_kind: ClassVar[InputKind] = InputKind.IMAGE_3D
    data_defaults: ClassVar[dict[str, Any]] = {}
    cli_commands: ClassVar[tuple[str, ...]] = ()
    adapts_voxel_size: ClassVar[bool] = False

    # -- recipes --------------------------------------------------------------------------
    def data_config(self, data: dict[str, Any], source: str = "recipe") -> dict[str, Any]:
        """Fill defaults and refuse unknown keys in a recipe's ``data`` section."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: data must be a mapping")
        unknown = sorted(set(data) - set(self.data_defaults))
        if unknown:
            raise ConfigError(f"{source}: data.{unknown[0]}: unknown key for task {self.name}")
        return {**self.data_defaults, **data}

    def training_data(
        self,
        data: dict[str, Any],
        patch_size: Sequence[int],
        *,
        seed: int = 0,
        source: str = "recipe",
    ) -> TrainingData:
        raise NotImplementedError

    def build_training(
        self,
        data: dict[str, Any],
        patch_size: Sequence[int],
        *,
        seed: int = 0,
        source: str = "recipe",
    ) -> TrainingData:
        """Alias of :meth:`training_data` (the name the training engine calls)."""
        return self.training_data(data, patch_size, seed=seed, source=source)

    def preprocessing(self, data: dict[str, Any], subjects: Sequence[Any]) -> dict[str, Any]:
        """The model card's ``preprocessing`` for a model trained on ``subjects``.

        Default: the data config's ``normalise`` rule (or the project default).
        """
        from mrenhance.models.card import DEFAULT_NORMALISATION

        return {"normalisation": dict(data.get("normalise") or DEFAULT_NORMALISATION)}

    # -- one input ------------------------------------------------------------------------
    def check_input(self, volume: Volume) -> None:
        raise NotImplementedError

    def prepare(self, volume: Volume, card: Any) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def restore(self, array: np.ndarray, context: dict[str, Any], volume: Volume) -> Volume:
        raise NotImplementedError

    # -- the paper's protocol -------------------------------------------------------------
    def baselines(self, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}

    def evaluate(self, methods: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def example_input(self, rng: np.random.Generator) -> Volume:
        raise NotImplementedError


def require_finite(data: np.ndarray, source: str) -> None:
    """Refuse an input holding NaN/Inf: one line naming the file and the count."""
    if not np.all(np.isfinite(data)):
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise InputError(f"{source}: {bad} NaN/Inf voxels")


def require_ndim(volume: Volume, ndim: int, what: str) -> str:
    """Refuse a Volume of another dimensionality; ``what`` names what the models need.

    Returns the volume's source name (for the caller's further one-line messages).
    """
    source = volume.meta.get("source", "input")
    if volume.data.ndim != ndim:
        raise InputError(f"{source}: {what}, got shape {tuple(volume.data.shape)}")
    return source


def require_3d(volume: Volume, what: str) -> None:
    """Refuse anything but a finite 3D image; ``what`` names what the task's models need."""
    require_finite(volume.data, require_ndim(volume, 3, what))


_TASKS: dict[str, Task] = {}
_T = TypeVar("_T", bound=type)


def register_task(cls: _T) -> _T:
    """Class decorator: register one instance of a :class:`Task` subclass under its name."""
    name = getattr(cls, "name", "")
    if not name:
        raise TypeError(f"{cls.__name__}: a task needs a name")
    if name in _TASKS and type(_TASKS[name]) is not cls:
        raise TypeError(f"task {name!r} is registered twice")
    _TASKS[name] = cls()
    return cls


def _discover() -> None:
    """Import every module of ``mrenhance.tasks``: each registers its task on import."""
    import importlib
    import pkgutil

    import mrenhance.tasks as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"mrenhance.tasks.{info.name}")


def list_tasks() -> list[Task]:
    """Every registered task, sorted by name."""
    _discover()
    return [_TASKS[k] for k in sorted(_TASKS)]


def get_task(name: str) -> Task:
    """The task registered under ``name`` (ConfigError listing the known ones)."""
    _discover()
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]
