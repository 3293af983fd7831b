"""SIGTERM behaves like SIGINT (mrenhance.signals): one line, exit 143 (130), no partial
output, no temp file; a batch stops between files and its summary says which were done.

- A forked ``mrenhance`` process (the real ``cli.main`` with its signal policy) writing a
  300^3 float32 NIfTI gets SIGTERM at seeded moments spread over the measured write window:
  it exits 143 with one line and leaves no temp file; the destination is absent or, if the
  signal came after the rename, complete.
- A fresh ``python -m mrenhance enhance`` batch gets SIGTERM after its first output: exit
  143, one line, the summary lists the done, interrupted and not-started files, and every
  output present loads.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel  # noqa: F401 - imported before forking, so the child's time is its write
import numpy as np
import pytest

from bad_inputs.build import make_tiny_weights, smooth_image, write_nifti
from mrenhance.signals import EXIT_CODES, Interrupted, deferred, handle_signals

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and signals")

BIG_SHAPE = (300, 300, 300)  # 108 MB of float32


def temps(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if re.fullmatch(r"\..*\.tmp.*", n))


def _forked_write(out: Path, err_file: Path, sig: int | None, delay_s: float) -> tuple[int, float]:
    """Fork ``mrenhance write-big OUT`` (a command registered in the child that saves a
    300^3 volume); send ``sig`` ``delay_s`` after the write starts. Returns the exit code
    and the seconds from the start of the write to its end (or to the signal)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 3
        try:
            os.close(r)
            fd = os.open(err_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            sys.stderr = open(fd, "w", buffering=1)  # noqa: SIM115
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            code = _child_main(out, w)
        finally:
            os._exit(code)
    os.close(w)
    try:
        assert os.read(r, 1) == b"s", "the writer died before writing"
        t0 = time.perf_counter()
        if sig is not None:
            time.sleep(delay_s)
            os.kill(pid, sig)
        os.read(r, 1)  # b"e" when the write returned; b"" when the child exited first
        seconds = time.perf_counter() - t0
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(r)
    assert os.WIFEXITED(status), f"the child died of signal {os.WTERMSIG(status)}"
    return os.WEXITSTATUS(status), seconds


def _child_main(out: Path, w: int) -> int:
    from mrenhance.cli import main, register_command
    from mrenhance.io import save
    from mrenhance.volume import Volume

    class WriteBig:
        NAME = "write-big"

        @staticmethod
        def add_parser(sub):
            p = sub.add_parser("write-big")
            p.add_argument("out")
            return p

        @staticmethod
        def run(args) -> int:
            vol = Volume(np.ones(BIG_SHAPE, np.float32), np.eye(4), {"source": "test"})
            os.write(w, b"s")
            save(vol, args.out, overwrite=True)
            os.write(w, b"e")
            return 0

    register_command(WriteBig)
    return main(["write-big", str(out)])


@pytest.mark.slow
def test_sigterm_at_any_moment_of_a_large_write_leaves_nothing_partial(tmp_path: Path):
    out = tmp_path / "big.nii"
    err = tmp_path / "stderr.txt"
    rc, window = _forked_write(out, err, None, 0.0)  # the write window, uninterrupted
    assert rc == 0 and out.exists()
    out.unlink()
    rng = np.random.default_rng(20261202)
    delays = sorted(rng.uniform(0.0, 1.1 * window, 5)) + [0.0]
    outcomes = []
    for i, delay in enumerate(delays):
        sig = signal.SIGINT if i == len(delays) - 1 else signal.SIGTERM
        rc, _ = _forked_write(out, err, sig, delay)
        lines = err.read_text().splitlines()
        assert temps(tmp_path) == [], (delay, temps(tmp_path))
        if rc == 0:  # the signal came after the command ended: the file is complete
            assert out.stat().st_size == 352 + 4 * int(np.prod(BIG_SHAPE))
        else:
            assert rc == EXIT_CODES[sig], (delay, rc, lines)
            assert lines == [f"mrenhance: interrupted by {sig.name}; no partial output was left"], (
                lines
            )
            if out.exists():  # signal held during the rename, raised after it
                assert out.stat().st_size == 352 + 4 * int(np.prod(BIG_SHAPE))
        outcomes.append((round(delay, 3), rc, out.exists()))
        out.unlink(missing_ok=True)
    interrupted = [o for o in outcomes if o[1] != 0 and not o[2]]
    assert len(interrupted) >= 3, outcomes  # most signals land during the write itself


@pytest.mark.slow
def test_sigterm_stops_a_batch_between_files_and_the_summary_says_which(tmp_path: Path):
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(6):
        write_nifti(scans / f"s{i}.nii.gz", smooth_image((40, 40, 40), seed=i))
    weights = make_tiny_weights(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    summary = tmp_path / "summary.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "mrenhance", "enhance", str(scans), "-o", str(out),
            "--model", str(weights), "-q", "--summary", str(summary)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "s0_enhanced.nii.gz").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no output after 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 143, stderr
    assert stderr.decode().splitlines() == [
        "mrenhance: interrupted by SIGTERM; no partial output was left"
    ]
    results = json.loads(summary.read_text())["results"]
    status = [r["status"] for r in results]
    assert status[0] == "ok" and status[-1] == "not started", status
    first_not_ok = status.index(next(s for s in status if s != "ok"))
    assert status[first_not_ok] in ("interrupted", "not started")
    assert set(status[first_not_ok + 1 :]) == {"not started"}, status
    written = sorted(p.name for p in out.iterdir() if not p.name.endswith(".json"))
    assert temps(out) == []
    ok = [Path(r["output"]).name for r in results if r["status"] == "ok"]
    assert written == ok
    # provenance sidecars belong to written images only (the last may lack one if the
    # signal came between the image and its sidecar)
    sidecars = {p.name for p in out.iterdir() if p.name.endswith(".json")}
    assert sidecars <= {n.removesuffix(".nii.gz") + ".json" for n in ok}
    from mrenhance.io import load

    for name in written:
        assert np.isfinite(load(out / name).data).all()


def test_a_signal_during_a_deferred_step_is_raised_after_it():
    with handle_signals():
        with pytest.raises(Interrupted) as excinfo:
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)  # the handler runs here, and holds the signal
                done = True
        assert done
        assert excinfo.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_sigint_and_sigterm_give_their_exit_codes():
    assert EXIT_CODES == {signal.SIGINT: 130, signal.SIGTERM: 143}
    with handle_signals(), pytest.raises(KeyboardInterrupt) as excinfo:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
    assert excinfo.value.exit_code == 130  # type: ignore[attr-defined]
