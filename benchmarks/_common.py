"""Shared helpers for benchmarks: provenance, result files, tables.

Allocator tuning and provenance live in :mod:`mrenhance.runtime` (one copy for the CLI,
the reports and the benchmarks); they are re-exported here.

Every benchmark writes ``benchmarks/results/<name>.json`` (rows + provenance) and prints a
Markdown table, so a README number can be traced to the command and machine that made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mrenhance import runtime
from mrenhance.runtime import tune_allocator

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]

__all__ = ["RESULTS", "ROOT", "provenance", "tune_allocator", "write_results", "peak_rss_mb"]


def provenance(command: str | None = None) -> dict[str, Any]:
    """Git commit (of this checkout), versions, machine and threads: stored with every result."""
    return runtime.provenance(command, folder=ROOT)


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
        f"{meta['torch_threads']} threads -> {path}"
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
