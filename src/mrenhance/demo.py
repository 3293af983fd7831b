"""``make demo``: every task's demo section on bundled data, with the shipped networks.

For each registered task that implements ``demo``, the task writes its NIfTIs, metrics
table and figure into its own subfolder; this module gathers the sections into one HTML
report. Today: 3D T1 super-resolution on the MNI152 T1 (k-space truncation 2x2, Sec. 2.6
-> tricubic baseline and every shipped SR network), ASL, DSC, PVS and DTI. The DTI
section (``dti/``) simulates one DWI test subject (never trained on), degrades it (noise +
4x per slice), runs bicubic and every shipped DTI network (``srresnet-dwi-x4``, then
``srgan-dwi-x4``) on its central slices, and writes per-slice PSNR/SSIM and FA/MD/V1
errors, FA maps of each method and a figure. Networks are the shipped weights, applied
through :class:`mrenhance.enhance_api.Enhancer` (the code path of ``mrenhance enhance``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mrenhance.errors import InputError


def shipped_enhancers(task: str, device: str = "cpu") -> dict[str, Any]:
    """Every shipped network of ``task`` as an Enhancer (weights read and checked once)."""
    from mrenhance.enhance_api import Enhancer
    from mrenhance.models.weights import list_shipped_weights, shipped_weights_dir

    return {
        card.name: Enhancer.from_weights(
            shipped_weights_dir() / f"{card.name}.safetensors", device=device
        )
        for card in list_shipped_weights()
        if card.task == task
    }


def run_demo(
    output: str | os.PathLike = "demo_output",
    *,
    overwrite: bool = False,
    full: bool = False,
    device: str = "cpu",
    networks: bool = True,
    echo: bool = True,
    tasks: list[str] | None = None,
) -> dict[str, Any]:
    """Run the demo; returns the report path and each task's section (rows, files, ...).

    By default networks run on each task's held-out region (for sr_t1: the test slab plus
    context, 72 axial slices, ~50 s per network on 2 CPU cores); ``full=True`` runs whole
    volumes. ``tasks`` limits the demo to these task names.
    """
    from mrenhance.report.html import SECTION_KEYS, write_html_report
    from mrenhance.report.tables import format_markdown
    from mrenhance.tasks import list_tasks

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: folder is not empty (use --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    say = print if echo else (lambda *a, **k: None)

    sections: dict[str, dict[str, Any]] = {}
    for task in list_tasks():
        if not hasattr(task, "demo") or (tasks is not None and task.name not in tasks):
            continue
        enhancers = shipped_enhancers(task.name, device) if networks else {}
        section = task.demo(out, enhancers, full=full, say=say)
        say(format_markdown(section["table_rows"]))
        sections[task.name] = section
    html = write_html_report(
        out / "report.html",
        title="mrenhance demo",
        sections=[{k: v for k, v in s.items() if k in SECTION_KEYS} for s in sections.values()],
    )
    n_files = sum(len(s.get("files", {})) for s in sections.values())
    say(f"wrote {out}/: report.html, metrics and figures, and {n_files} NIfTI files")
    first = next(iter(sections.values()), {})
    return {
        "html": html,
        "sections": sections,
        "rows": first.get("table_rows", []),
        "figure": _image_path((first.get("images") or [None])[0]),
        "files": first.get("files", {}),
        "tables": first.get("tables"),
    }


def _image_path(item: Any) -> Any:
    """A section image's path (images are paths or ``{"path", "caption"}``)."""
    return item.get("path") if isinstance(item, dict) else item
