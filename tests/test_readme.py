"""The README's quick start and Python example run as written (in a fresh folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(marker: str, lang: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(marker)
    match = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no {lang} block after {marker!r}"
    return match.group(1)


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path):
    pytest.importorskip("nilearn")
    lines = [ln.split("  #")[0].strip() for ln in _block_after("Quick start", "bash").splitlines()]
    commands = [ln for ln in lines if ln.startswith(".venv/bin/mrenhance ")]
    assert len(commands) >= 5 and any(" sample " in c for c in commands)
    for command in commands:
        # the installed CLI, through the interpreter running the tests
        args = [sys.executable, "-m", "mrenhance", *command.split()[1:]]
        done = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                              timeout=900)  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "t1_sr.nii.gz").is_file() and (tmp_path / "t1_sr_report.html").is_file()
    assert (tmp_path / "t1_sr.json").is_file()
    assert "psnr" in done.stdout.lower()  # evaluate printed its numbers
