"""Shared helpers for benchmarks: provenance, result files, tables.

Every benchmark writes ``benchmarks/results/<name>.json`` (rows + provenance) and prints a
Markdown table, so a README number can be traced to the command and machine that made it.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def tune_allocator() -> None:
    """The glibc settings that make eager PyTorch ~3x faster on small CPUs (MACHINE-NOTES)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 2**31 - 1)
        libc.mallopt(-3, 2**31 - 1)
    except OSError:
        pass


def provenance(command: str | None = None) -> dict[str, Any]:
    """Git commit, versions, machine and threads: printed and stored with every result."""
    import numpy
    import torch

    import mrenhance

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "unknown", False
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": commit + ("-dirty" if dirty else ""),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mrenhance": mrenhance.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "machine": f"{cpu}, {os.cpu_count()} CPUs",
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_results(name: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` and ``results/<name>.md``; print the table."""
    from mrenhance.io.atomic import write_text_atomic
    from mrenhance.report.tables import format_markdown

    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "provenance": meta, "rows": rows}
    path = RESULTS / f"{name}.json"
    write_text_atomic(path, json.dumps(payload, indent=2, default=_jsonable), overwrite=True)
    table = format_markdown(rows)
    lines = [f"# {name}", "", table, "", "Provenance:", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    write_text_atomic(RESULTS / f"{name}.md", "\n".join(lines) + "\n", overwrite=True)
    write_text_atomic(RESULTS / f"{name}.csv", _csv(rows), overwrite=True)
    print(table)
    print(
        f"\n[{name}] {meta['command']} @ {meta['git_commit']} on {meta['machine']}, "
        f"{meta['torch_threads']} threads -> {path.relative_to(ROOT)}"
    )
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    return str(value)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux ru_maxrss is KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _csv(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
