"""Human-readable results: tables (Markdown/CSV/JSON), PNG figures and a self-contained HTML page.

- :mod:`mrenhance.report.tables`: :func:`write_table`, :func:`format_markdown`;
- :mod:`mrenhance.report.figures`: :func:`orthogonal_mosaic`, :func:`training_curves`,
  :func:`metric_bars` (matplotlib ``Figure`` + Agg, never ``pyplot``);
- :mod:`mrenhance.report.html`: :func:`write_html_report`.

Every file is written atomically. The figure functions are imported lazily so that
``mrenhance.report.tables`` does not pull in matplotlib.
"""

from __future__ import annotations

from typing import Any

from mrenhance.report.tables import format_markdown, write_table

__all__ = [
    "format_markdown",
    "metric_bars",
    "orthogonal_mosaic",
    "training_curves",
    "write_html_report",
    "write_table",
]

_LAZY = {
    "orthogonal_mosaic": "mrenhance.report.figures",
    "training_curves": "mrenhance.report.figures",
    "metric_bars": "mrenhance.report.figures",
    "write_html_report": "mrenhance.report.html",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mrenhance.report' has no attribute {name!r}")
