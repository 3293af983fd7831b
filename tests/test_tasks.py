"""Conformance: every registered task honours the protocol of ``mrenhance.tasks.base``."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.errors import ConfigError, InputError
from mrenhance.models.card import Normalisation
from mrenhance.tasks import InputKind, Task, list_tasks
from mrenhance.volume import Volume

TASKS = list_tasks()


def test_at_least_the_sr_task_is_registered():
    assert "sr_t1" in [t.name for t in TASKS]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_task_declares_itself(task: Task):
    assert task.name and task.description and task.paper
    assert task.spatial_dims in (2, 3)
    assert isinstance(task.input_kind, InputKind)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_data_config_fills_defaults_and_refuses_unknown_keys(task: Task):
    cfg = task.data_config({})
    assert set(cfg) >= set(task.data_defaults)
    with pytest.raises(ConfigError, match="no_such_key"):
        task.data_config({"no_such_key": 1}, "r.yaml")


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_prepare_then_restore_gives_a_volume_with_geometry(task: Task):
    rng = np.random.default_rng(0)
    vol = task.example_input(rng)
    task.check_input(vol)
    array, ctx = task.prepare(vol, Normalisation())
    assert array.dtype == np.float32 and np.isfinite(array).all()
    out = task.restore(array[..., 0] if array.ndim == 4 else array, ctx, vol)
    assert isinstance(out, Volume)
    assert out.affine.shape == (4, 4) and np.isfinite(out.affine).all()


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_check_input_refuses_wrong_dimensionality(task: Task):
    shape = (6, 6, 6, 3) if task.input_kind is InputKind.IMAGE_3D else (6, 6, 6)
    bad = Volume(np.ones(shape, np.float32), meta={"source": "bad.nii.gz"})
    with pytest.raises(InputError, match="bad.nii.gz"):
        task.check_input(bad)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_baselines_are_named_callables(task: Task):
    baselines = task.baselines()
    assert baselines and all(callable(m) for m in baselines.values())
