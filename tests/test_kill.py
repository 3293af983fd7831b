"""SIGKILL at random moments: nothing half-written, and training resumes bit-identically.

- Large writes (a 300^3 float32 NIfTI, a 64 MiB checkpoint) run in a forked child that is
  killed with SIGKILL at a random moment of the write; the destination is then either the
  complete old file or the complete new one, never a partial one. A killed writer leaves
  its temp file ``.<name>.XXXXXXXX.tmp<suffix>``; the next successful write removes it.
- ``mrenhance train`` is killed at random steps and continued with ``--resume``; its final
  weights equal an uninterrupted run's bit for bit (CPU, one thread).
- A loss that becomes Inf/NaN stops ``mrenhance train`` with one line and keeps the last
  good checkpoint.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel  # noqa: F401 - imported before forking, so a child's time is its write
import numpy as np
import pytest
import torch

from bad_inputs.build import smooth_image, tiny_recipe, write_nifti, write_recipe
from mrenhance.engine.checkpoint import load_checkpoint, save_checkpoint
from mrenhance.io import load, save
from mrenhance.volume import Volume

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")

SEED = 20240607
BIG_SHAPE = (300, 300, 300)  # 108 MB of float32


def stale_temps(target: Path) -> list[str]:
    """Temp files a killed writer of ``target`` may leave (see mrenhance.io.atomic)."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}\.tmp.*")
    return sorted(n for n in os.listdir(target.parent) if pattern.fullmatch(n))


def fork_write_and_kill(
    write: Callable[[Callable[[], None]], None], delay_s: float | None
) -> tuple[bool, float]:
    """Run ``write(started)`` in a forked child; SIGKILL it ``delay_s`` after ``started()``.

    Returns whether the child was killed (False: it finished first, or ``delay_s`` is None
    and it was waited for) and the seconds from ``started()`` until ``write`` returned (the
    write window; the child's exit, freeing its memory, comes after), or until the kill.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(r)
            write(lambda: os.write(w, b"s"))  # type: ignore[call-arg]
            os.write(w, b"e")
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    os.close(w)
    try:
        assert os.read(r, 1) == b"s", "the writer died before writing"
        t0 = time.perf_counter()
        if delay_s is not None:
            time.sleep(delay_s)
            os.kill(pid, signal.SIGKILL)
        else:
            assert os.read(r, 1) == b"e", "the writer failed"
        seconds = time.perf_counter() - t0
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(r)
    if delay_s is None:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, seconds


# ---------------------------------------------------------------------------- NIfTI


def _nifti_writer(target: Path, version: int) -> Callable[[Callable[[], None]], None]:
    def write(started: Callable[[], None]) -> None:
        vol = Volume(np.full(BIG_SHAPE, float(version), np.float32), np.eye(4), {})
        started()
        save(vol, target, overwrite=True)

    return write


def _nifti_version(target: Path) -> int:
    """The version held by ``target``; fails if the file is partial or mixed."""
    data = load(target).data  # a truncated file raises InputError here
    assert data.shape == BIG_SHAPE
    value = float(data[0, 0, 0])
    assert np.all(data == value), "the file mixes two versions"
    return int(value)


@pytest.mark.slow
def test_sigkill_during_large_nifti_writes_leaves_old_or_new_file(tmp_path: Path):
    rng = np.random.default_rng(SEED)
    target = tmp_path / "big.nii"
    _, write_s = fork_write_and_kill(_nifti_writer(target, 1), None)  # the good old file
    current, kills, mid_write = 1, 0, 0

    # the first write can be much slower than later ones (a cold page cache, a loaded
    # machine), so delays drawn from its time can outlast most writes: keep writing (at most
    # 60 writes) until the counts asserted below are reached, shrinking the delay scale after
    # each write that finished first, so the counts do not depend on the machine's speed
    scale = write_s
    for version in range(2, 62):
        if version >= 18 and kills >= 10 and mid_write >= 4:
            break
        temps = stale_temps(target)
        delay = rng.uniform(0, 1.15 * scale)  # a few land after the rename
        killed, _ = fork_write_and_kill(_nifti_writer(target, version), delay)
        found = _nifti_version(target)
        assert found in (current, version)  # old or new, complete, nothing else
        kills += killed
        scale = scale if killed else 0.75 * scale
        mid_write += bool(set(stale_temps(target)) - set(temps))  # this kill left a temp
        current = found

    assert kills >= 10  # most writes were really killed
    assert mid_write >= 4  # and several of them while the temp file was being written
    fork_write_and_kill(_nifti_writer(target, 99), None)
    assert _nifti_version(target) == 99
    assert stale_temps(target) == []  # the next successful write cleaned up


# ---------------------------------------------------------------------------- checkpoints


def _checkpoint_writer(target: Path, version: int) -> Callable[[Callable[[], None]], None]:
    weights = torch.full((16 * 2**20,), float(version))  # 64 MiB, built before the fork

    def write(started: Callable[[], None]) -> None:
        started()
        save_checkpoint(target, {"step": version, "model": {"w": weights}})

    return write


def _checkpoint_version(target: Path) -> int:
    state = load_checkpoint(target)  # a partial zip raises WeightsError here
    w = state["model"]["w"]
    assert w.numel() == 16 * 2**20 and torch.all(w == state["step"])
    return int(state["step"])


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_leaves_old_or_new_file(tmp_path: Path):
    rng = np.random.default_rng(SEED + 1)
    target = tmp_path / "checkpoints" / "last.pt"
    _, write_s = fork_write_and_kill(_checkpoint_writer(target, 1), None)
    current, kills = 1, 0

    # as above: keep writing until 5 kills landed (at most 40 writes), shrinking the delay
    # scale after each write that finished first, so the count does not depend on the machine
    scale = write_s
    for version in range(2, 42):
        killed, _ = fork_write_and_kill(
            _checkpoint_writer(target, version), rng.uniform(0, 1.15 * scale)
        )
        found = _checkpoint_version(target)
        assert found in (current, version)
        kills += killed
        scale = scale if killed else 0.75 * scale
        current = found
        if kills >= 5 and version >= 11:
            break

    assert kills >= 5
    fork_write_and_kill(_checkpoint_writer(target, 99), None)
    assert _checkpoint_version(target) == 99
    assert stale_temps(target) == []


# ---------------------------------------------------------------------------- training

STEPS = 30


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train_cmd(recipe: Path, run: Path, *overrides: str, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "mrenhance", "train", str(recipe), *overrides,
            "--run-dir", str(run), "-q", *(["--resume"] if resume else [])]  # fmt: skip


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from mrenhance.models.weights import load_weights

    state, _ = load_weights(run / f"{run.name}.safetensors")  # sha256-checked, named after the run
    return state


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recipe")
    data = write_nifti(folder / "blob.nii.gz", smooth_image((40, 40, 40)))
    return write_recipe(folder / "tiny.yaml", tiny_recipe(data, steps=STEPS))


def _steps_logged(metrics: Path) -> int:
    try:
        return max(0, len(metrics.read_text().splitlines()) - 1)
    except OSError:
        return 0


def kill_training_at(recipe: Path, run: Path, step: int, jitter_s: float) -> int:
    """Start ``mrenhance train``; SIGKILL it ``jitter_s`` after ``metrics.csv`` shows
    ``step`` steps done (its checkpoint is being written then). Returns the step of the
    checkpoint left on disk, which must load (never a partial file)."""
    metrics = run / "supervised" / "metrics.csv"
    proc = subprocess.Popen(_train_cmd(recipe, run), env=_env(), stdout=subprocess.DEVNULL)
    try:
        while proc.poll() is None and _steps_logged(metrics) < step:
            time.sleep(0.002)
        time.sleep(jitter_s)
        proc.send_signal(signal.SIGKILL)
    finally:
        rc = proc.wait(timeout=60)
    assert rc == -signal.SIGKILL, f"not killed by our SIGKILL: returncode {rc}"
    return int(load_checkpoint(run / "supervised" / "checkpoints" / "last.pt")["step"])


@pytest.mark.slow
def test_training_killed_at_random_steps_resumes_bit_identically(recipe: Path, tmp_path: Path):
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd(recipe, reference), env=_env(), check=True, capture_output=True)
    expected = _weights(reference)
    rng = np.random.default_rng(SEED)
    targets = rng.choice(np.arange(1, STEPS - 2), size=3, replace=False)
    killed_at = []

    for trial, target in enumerate(targets):
        run = tmp_path / f"killed{trial}"
        step = kill_training_at(recipe, run, int(target), rng.uniform(0.0, 0.06))
        assert 1 <= step <= STEPS
        assert not (run / f"{run.name}.safetensors").exists()
        killed_at.append(step)

        done = subprocess.run(
            _train_cmd(recipe, run, resume=True), env=_env(), capture_output=True, timeout=120
        )

        assert done.returncode == 0, done.stderr.decode()
        got = _weights(run)
        assert got.keys() == expected.keys()
        different = [k for k in expected if not torch.equal(got[k], expected[k])]
        assert different == [], f"killed at step {step}: {different[:3]} differ"
        last = run / "supervised" / "checkpoints" / "last.pt"
        assert stale_temps(last) == []  # a killed checkpoint write was cleaned up
        rows = (run / "supervised" / "metrics.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[0]) for r in rows] == list(range(1, STEPS + 1))

    assert len(set(killed_at)) == 3, f"kills landed at steps {killed_at}"


@pytest.mark.slow
def test_an_infinite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, recipe: Path
):
    run = tmp_path / "diverged"

    # Adam moves every weight by ~lr per step: 1e20 makes step 2's outputs overflow
    proc = subprocess.run(
        _train_cmd(recipe, run, "train.lr=1e20"), env=_env(), capture_output=True, timeout=120
    )

    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    match = re.search(
        r"step (\d+): loss is (nan|inf); last good checkpoint kept at (.+) \(step (\d+)\)", err
    )
    assert match, err
    diverged, kept = int(match.group(1)), int(match.group(4))
    assert kept == diverged - 1
    state = load_checkpoint(match.group(3))
    assert int(state["step"]) == kept
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (run / f"{run.name}.safetensors").exists()  # no weights from a diverged run
