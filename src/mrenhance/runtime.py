"""Process set-up and provenance shared by the CLI, the reports and the benchmarks.

- :func:`tune_allocator`: the glibc malloc settings that make eager PyTorch about 3x faster
  on small CPUs (measured; see ``docs/performance.md``).
- :func:`provenance`: what produced a result (git commit, versions, machine, threads), so a
  number in a table can be traced to the command and machine that made it.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["tune_allocator", "provenance", "git_commit", "machine"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1


def tune_allocator() -> bool:
    """Keep freed memory in glibc's arena for reuse; return whether the settings took.

    Eager PyTorch allocates fresh buffers for every layer, and touching fresh pages is slow
    on small VMs: with mmap and trim thresholds set high the network runs ~3x faster (see
    ``docs/performance.md``). ``mallopt`` caps the trim threshold at 2 GiB, below a 96^3
    forward pass's ~5 GB peak; ``MALLOC_TRIM_THRESHOLD_=100000000000`` in the environment
    (as the Makefile sets) keeps the full gain there. Harmless where glibc is absent.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
        return libc.mallopt(_M_MMAP_THRESHOLD, _INT_MAX) == 1 and ok
    except (OSError, AttributeError):
        return False


def git_commit(folder: str | os.PathLike | None = None) -> str:
    """Short commit of the checkout holding ``folder`` (default: this package), ``-dirty``
    when tracked files differ; ``"unknown"`` outside a git checkout."""
    cwd = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        if commit.returncode != 0 or not commit.stdout.strip():
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if dirty else "")


def machine() -> str:
    """CPU model name (from /proc/cpuinfo where present) and CPU count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs"


#: the instruction-set flags that decide CPU inference speed (docs/performance.md: the same
#: network ran 5x slower on an AVX2-only VM than on an AVX-512 one, bf16 25x slower again)
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where that file is absent)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_isa() -> str:
    """The speed-relevant ISA flags this CPU has, e.g. ``"avx2 fma avx512f avx512_bf16"``."""
    flags = cpu_flags()
    return " ".join(f for f in ISA_FLAGS if f in flags) or "unknown"


def provenance(
    command: str | None = None, *, folder: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Git commit, versions, machine and threads of this process.

    ``command`` defaults to ``sys.argv``; ``folder`` is the checkout whose commit is
    recorded (default: the one holding this package). torch fields are filled when torch
    is importable.
    """
    import numpy

    import mrenhance

    if command is None:
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""
    info: dict[str, Any] = {
        "command": command,
        "git_commit": git_commit(folder),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mrenhance": mrenhance.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": machine(),
        "cpu_isa": cpu_isa(),
    }
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return info
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info
