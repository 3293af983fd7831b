"""Tasks: one module per paper's method, each a registered :class:`~mrenhance.tasks.base.Task`.

See :mod:`mrenhance.tasks.base` for the protocol. ``get_task("sr_t1")`` returns the task
instance; dropping a module that defines a ``@register_task`` class into this package is
all it takes to add one.
"""

from __future__ import annotations

from mrenhance.tasks.base import InputKind, Task, TrainingData, get_task, list_tasks, register_task

__all__ = [
    "InputKind",
    "Task",
    "TrainingData",
    "get_task",
    "known_task_names",
    "list_tasks",
    "register_task",
]


def known_task_names() -> list[str]:
    """Names of the registered tasks, sorted."""
    return [t.name for t in list_tasks()]
