"""A self-contained HTML report: headings, text, tables, images and interactive viewers.

Images are embedded as base64 ``data:`` URIs and the slice viewers
(:mod:`mrenhance.report.viewer`) carry their volumes inline, so the page can be mailed or
archived alone and loads nothing from the network.
Every piece of text (title, headings, paragraphs, table cells, captions, provenance) is
HTML-escaped: a method name such as ``<b>x</b>`` shows literally and cannot inject markup.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrenhance.errors import InputError
from mrenhance.io.atomic import check_output_path, write_text_atomic
from mrenhance.report.tables import (
    DEFAULT_FLOAT_FORMAT,
    column_formats,
    column_names,
    format_cell,
)

__all__ = ["SECTION_KEYS", "provenance", "render_html_report", "write_html_report"]

#: The keys a report section may hold (anything else is refused as a typo).
SECTION_KEYS = frozenset(
    {"heading", "text", "table_rows", "images", "viewers", "cards", "provenance"}
)
_SECTION_KEYS = SECTION_KEYS
_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 70em; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 1px solid #ccc; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
.provenance { margin-top: 3em; font-size: .85em; color: #555; border-top: 1px solid #ccc; }
.provenance code { white-space: pre-wrap; word-break: break-all; }
details { margin: .6em 0; } summary { cursor: pointer; }
details pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: .82em; }
"""


def provenance(command: str | None = None) -> dict[str, str]:
    """What produced a report: version, UTC date, command, commit, Python, platform, machine.

    The fields come from :func:`mrenhance.runtime.provenance` (one source for the reports
    and the benchmarks); the date is shown as ``YYYY-MM-DD HH:MM:SS UTC``.
    """
    from mrenhance.runtime import provenance as run_provenance

    info = run_provenance(command)
    return {
        "mrenhance": info["mrenhance"],
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": info["command"],
        "git_commit": info["git_commit"],
        "python": info["python"],
        "platform": info["platform"],
        "machine": info["machine"],
    }


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _paragraphs(text: str) -> str:
    blocks = [b.strip() for b in str(text).replace("\r\n", "\n").split("\n\n")]
    return "\n".join(
        "<p>" + "<br>\n".join(_esc(line) for line in b.split("\n")) + "</p>" for b in blocks if b
    )


def _table(rows: Sequence[Mapping[str, Any]], float_format: str) -> str:
    columns = column_names(rows)
    if not columns:
        return "<p><em>(no rows)</em></p>"
    formats = column_formats(rows, float_format)
    header = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    out = ["<table>", f"<thead><tr>{header}</tr></thead>", "<tbody>"]
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            numeric = numeric or type(value).__module__ == "numpy"
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{_esc(format_cell(value, formats[c]))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _image(item: Any, where: str) -> str:
    caption = None
    if isinstance(item, Mapping):
        caption = item.get("caption")
        item = item.get("path")
    if not isinstance(item, (str, os.PathLike)):
        raise InputError(f"{where}: an image must be a path or {{'path', 'caption'}}, got {item!r}")
    p = Path(item)
    mime = _MIME.get(p.suffix.lower())
    if mime is None:
        raise InputError(f"{p}: cannot embed images of type {p.suffix!r} (use PNG)")
    if not p.is_file():
        raise InputError(f"{p}: image not found")
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    alt = _esc(caption if caption else p.name)
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{alt}" src="data:{mime};base64,{data}">{cap}</figure>'


def _details(summary: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    return f"<details><summary>{_esc(summary)}</summary><pre>{_esc(text)}</pre></details>"


def _viewers(items: Any, where: str, counter: list[int]) -> list[str]:
    from mrenhance.report.viewer import viewer_case, viewer_html

    if isinstance(items, Mapping):
        items = [items]
    out = []
    for item in items:
        if not isinstance(item, Mapping):
            raise InputError(f"{where}: a viewer is a dict, got {type(item).__name__}")
        # a payload from viewer_case, or its keyword arguments
        case = item if "shape" in item and "images" in item else viewer_case(**item)
        counter[0] += 1
        out.append(viewer_html(case, f"viewer{counter[0]}"))
    return out


def render_html_report(
    *,
    title: str,
    sections: Sequence[Mapping[str, Any]],
    command: str | None = None,
    float_format: str = DEFAULT_FLOAT_FORMAT,
) -> str:
    """The HTML text of :func:`write_html_report` (same parameters), without writing it."""
    if isinstance(sections, Mapping) or not isinstance(sections, Sequence):
        raise InputError("write_html_report: sections must be a list of dicts")
    body = [f"<h1>{_esc(title)}</h1>"]
    n_viewers = [0]
    for i, section in enumerate(sections):
        where = f"write_html_report: section {i}"
        if not isinstance(section, Mapping):
            raise InputError(f"{where} is a {type(section).__name__}, not a dict")
        unknown = set(section) - _SECTION_KEYS
        if unknown:
            raise InputError(
                f"{where} has unknown key(s) {sorted(unknown)}; known: {sorted(_SECTION_KEYS)}"
            )
        body.append("<section>")
        if section.get("heading"):
            body.append(f"<h2>{_esc(section['heading'])}</h2>")
        if section.get("text"):
            body.append(_paragraphs(section["text"]))
        rows = section.get("table_rows")
        if rows is not None:
            if isinstance(rows, Mapping) or not all(isinstance(r, Mapping) for r in rows):
                raise InputError(f"{where}: table_rows must be a list of dicts")
            body.append(_table(list(rows), float_format))
        images = section.get("images") or []
        if isinstance(images, (str, os.PathLike, Mapping)):
            images = [images]
        if section.get("viewers"):
            body.extend(_viewers(section["viewers"], where, n_viewers))
        body.extend(_image(item, where) for item in images)
        for card in section.get("cards") or []:
            name = card.get("name", "model") if isinstance(card, Mapping) else "model"
            body.append(_details(f"model card: {name}", card))
        if section.get("provenance"):
            body.append(_details("provenance of these results", section["provenance"]))
        body.append("</section>")

    prov = provenance(command)
    items = "".join(
        f"<dt>{_esc(k)}</dt><dd><code>{_esc(v)}</code></dd>" if k == "command" else
        f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>"
        for k, v in prov.items()
    )  # fmt: skip
    body.append(f'<footer class="provenance"><h2>Provenance</h2><dl>{items}</dl></footer>')
    css, script = _CSS, ""
    if n_viewers[0]:
        from mrenhance.report.viewer import VIEWER_CSS, viewer_js

        css += VIEWER_CSS
        script = f"\n<script>{viewer_js()}</script>"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="mrenhance {_esc(prov["mrenhance"])}">\n'
        f"<title>{_esc(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + script
        + "\n</body>\n</html>\n"
    )


def write_html_report(
    path: str | os.PathLike,
    *,
    title: str,
    sections: Sequence[Mapping[str, Any]],
    command: str | None = None,
    float_format: str = DEFAULT_FLOAT_FORMAT,
    overwrite: bool = True,
) -> Path:
    """Write a self-contained HTML report atomically.

    Parameters
    ----------
    path : path
        Output ``.html`` file.
    title : str
        Page title and top heading.
    sections : list of dict
        Each with any of the keys ``heading`` (str), ``text`` (plain text; blank lines
        separate paragraphs), ``table_rows`` (list of row dicts, rendered like
        :func:`mrenhance.report.tables.format_markdown`) and ``images`` (list of image paths,
        or of ``{"path": ..., "caption": ...}``; PNG, JPEG, GIF or SVG, embedded as base64),
        ``viewers`` (a dict or list of dicts: the keyword arguments of
        :func:`mrenhance.report.viewer.viewer_case`, e.g. ``{"images": {...}, "reference":
        "HR", "offset": (0, 0, 96)}``, or its result), ``cards`` (model cards as dicts,
        shown folded) and ``provenance`` (any JSON-able value, shown folded).
        Unknown keys are an error (they are usually typos).
    command : str, optional
        The command line recorded in the provenance footer; default ``sys.argv``.
    float_format : str
        Format spec for floats in tables.
    overwrite : bool
        Replace an existing file (default).

    Returns
    -------
    Path
        ``path``. The footer records the mrenhance version, the UTC date, the command, and
        the Python and platform versions.
    """
    check_output_path(path, overwrite)
    text = render_html_report(
        title=title, sections=sections, command=command, float_format=float_format
    )
    return Path(write_text_atomic(path, text, overwrite=overwrite))
