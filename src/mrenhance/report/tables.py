"""Result tables: one list of row dicts written as Markdown, CSV and JSON side by side.

The Markdown file is for people (and the terminal, via :func:`format_markdown`); the CSV and
JSON files are for programs and keep every number at full precision (``repr`` of the float),
so reading them back gives the very same values.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.errors import InputError
from mrenhance.io.atomic import check_output_path, write_text_atomic

__all__ = [
    "column_formats",
    "column_names",
    "csv_text",
    "format_cell",
    "format_markdown",
    "json_ready",
    "write_table",
]

DEFAULT_FLOAT_FORMAT = ".4g"


def _plain(value: Any) -> Any:
    """numpy scalars and 0-d arrays to Python scalars; everything else unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def column_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys, in the order they are first seen."""
    names: dict[str, None] = {}
    for row in rows:
        for key in row:
            names.setdefault(str(key), None)
    return list(names)


def format_cell(value: Any, float_format: str = DEFAULT_FLOAT_FORMAT) -> str:
    """A value as table text: floats with ``float_format`` (a format spec such as ``".4f"``),
    None as an empty string, everything else with ``str``."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return format(value, float_format)
    return str(value)


def column_formats(
    rows: Sequence[Mapping[str, Any]], float_format: str = DEFAULT_FLOAT_FORMAT
) -> dict[str, str]:
    """One float format per column, so a column's numbers line up and compare.

    With the default ``".4g"``, a column gets fixed decimals: as many as its largest value
    needs for 4 significant digits (at least 2 when it also holds values below 1). So 0.9906 and
    0.99 print as ``0.9906`` and ``0.9900``, not ``0.9906`` and ``0.99``. Columns spanning
    more than six decades keep ``".4g"``. Any other ``float_format`` applies to all columns.
    """
    formats: dict[str, str] = {}
    for c in column_names(rows):
        values = [_plain(r.get(c)) for r in rows]
        floats = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v) and v]
        if float_format != DEFAULT_FLOAT_FORMAT or not floats:
            formats[c] = float_format
            continue
        lo, hi = min(floats), max(floats)
        if hi >= 1e6 or lo < 1e-4 or hi / lo > 1e6:
            formats[c] = float_format
            continue

        def decimals(v: float) -> int:
            return max(0, 3 - math.floor(math.log10(v)))

        # 4 significant digits for the largest value; a column that also holds values
        # below 1 (0.3 s beside 1364 s) keeps 2 decimals so they do not print as 0
        formats[c] = f".{min(6, max(decimals(hi), 2 if lo < 1 else 0))}f"
    return formats


def _check_rows(where: str, rows: Any) -> list[Mapping[str, Any]]:
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise InputError(f"{where}: rows must be a list of dicts, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(f"{where}: row {i} is a {type(row).__name__}, not a dict")
    return list(rows)


def _markdown_cell(text: str) -> str:
    # A pipe would end the cell and a newline the row.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def format_markdown(
    rows: Sequence[Mapping[str, Any]], float_format: str = DEFAULT_FLOAT_FORMAT
) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (numbers right-aligned), ending in a newline.

    Parameters
    ----------
    rows : list of dict
        One dict per row; columns are the union of the keys in first-seen order, missing
        values are empty cells.
    float_format : str
        Format spec for floats, e.g. ``".2f"``; the default ``".4g"`` picks fixed decimals
        per column (:func:`column_formats`).
    """
    rows = _check_rows("format_markdown", rows)
    columns = column_names(rows)
    if not columns:
        return "_(no rows)_\n"
    formats = column_formats(rows, float_format)
    cells = [[_markdown_cell(format_cell(row.get(c), formats[c])) for c in columns] for row in rows]
    header = [_markdown_cell(c) for c in columns]
    numeric = [
        all(isinstance(_plain(row.get(c)), (int, float)) for row in rows if row.get(c) is not None)
        and any(row.get(c) is not None for row in rows)
        for c in columns
    ]
    widths = [max([len(header[j]), 3] + [len(r[j]) for r in cells]) for j in range(len(columns))]

    def line(values: list[str]) -> str:
        padded = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    lines = [line(header), "| " + " | ".join(rule) + " |", *(line(r) for r in cells)]
    return "\n".join(lines) + "\n"


def _csv_cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision: float(text) gives the same number back
    return str(value)


def _json_value(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        # choice: strict JSON has no inf/nan; write them as strings that float() reads back.
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (os.PathLike,)):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return str(value)


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as CSV text: a header (the union of the keys), full-precision floats, empty
    cells for None (the CSV of :func:`write_table`)."""
    rows = _check_rows("csv_text", rows)
    columns = column_names(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if columns:
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def json_ready(value: Any) -> Any:
    """``value`` (dicts, lists, numbers, numpy scalars, paths) as strict JSON values;
    non-finite floats become ``"inf"``, ``"-inf"``, ``"nan"`` (as in :func:`write_table`)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return _json_value(value)


def write_table(
    rows: Sequence[Mapping[str, Any]],
    base_path: str | os.PathLike,
    *,
    title: str | None = None,
    float_format: str = DEFAULT_FLOAT_FORMAT,
    overwrite: bool = True,
) -> dict[str, Path]:
    """Write ``rows`` as ``<base>.md``, ``<base>.csv`` and ``<base>.json``, each atomically.

    Parameters
    ----------
    rows : list of dict
        One dict per row (e.g. ``{"method": "mDCSRN", "psnr": 35.2, "ssim": 0.94}``).
        Columns are the union of the keys in first-seen order.
    base_path : path
        Output path without extension; the suffixes are appended to the full name, so
        ``results/sr.b4u4`` gives ``results/sr.b4u4.md`` etc.
    title : str, optional
        A ``# title`` heading in the Markdown file and a ``"title"`` field in the JSON.
    float_format : str
        Format spec for floats in the Markdown file only; CSV and JSON keep full precision.
    overwrite : bool
        Replace existing files (default); if False an existing file is an error and nothing
        is written.

    Returns
    -------
    dict
        ``{"md": Path, "csv": Path, "json": Path}``.

    Notes
    -----
    CSV: a header row, then one row per dict; missing values and None are empty cells, floats
    are written with ``repr`` (``inf``/``nan`` included). JSON: ``{"title", "columns", "rows"}``
    with rows as objects; non-finite floats are the strings ``"inf"``, ``"-inf"``, ``"nan"``.
    """
    rows = _check_rows("write_table", rows)
    base = Path(base_path)
    paths = {ext: base.with_name(f"{base.name}.{ext}") for ext in ("md", "csv", "json")}
    for p in paths.values():  # fail before writing anything
        check_output_path(p, overwrite)
    columns = column_names(rows)

    md = format_markdown(rows, float_format)
    if title:
        md = f"# {title}\n\n{md}"

    doc = {
        "title": title,
        "columns": columns,
        "rows": [{str(k): _json_value(v) for k, v in row.items()} for row in rows],
    }
    text_json = json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False) + "\n"

    write_text_atomic(paths["md"], md, overwrite=overwrite)
    write_text_atomic(paths["csv"], csv_text(rows), overwrite=overwrite)
    write_text_atomic(paths["json"], text_json, overwrite=overwrite)
    return paths
