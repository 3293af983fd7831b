"""Tests for mrenhance.report: tables round-trip, figures are real PNGs, HTML is self-contained."""

from __future__ import annotations

import base64
import csv
import json
import re

import matplotlib.image
import numpy as np
import pytest

from mrenhance.errors import InputError, OutputExistsError
from mrenhance.report import figures, tables
from mrenhance.report.html import write_html_report

ROWS = [
    {"method": "tricubic", "psnr": 31.123456789, "ssim": 0.912345678, "seconds": 2},
    {"method": "mDCSRN", "psnr": 33.987654321, "ssim": np.float32(0.95), "seconds": 41},
    {"method": "identity", "psnr": float("inf"), "ssim": 1.0, "note": "a|b"},
]


# --- tables -----------------------------------------------------------------------------------


def test_write_table_files_parse_back_to_the_same_numbers(tmp_path):
    paths = tables.write_table(ROWS, tmp_path / "sr.eval", title="Test slab")
    assert {k: p.name for k, p in paths.items()} == {
        "md": "sr.eval.md",
        "csv": "sr.eval.csv",
        "json": "sr.eval.json",
    }
    with open(paths["csv"], newline="") as fh:
        back = list(csv.DictReader(fh))
    assert list(back[0]) == ["method", "psnr", "ssim", "seconds", "note"]
    for row, parsed in zip(ROWS, back, strict=True):
        assert parsed["method"] == row["method"]
        assert float(parsed["psnr"]) == row["psnr"]
        assert float(parsed["ssim"]) == float(row["ssim"])
    assert back[2]["seconds"] == ""  # missing value -> empty cell

    doc = json.loads(paths["json"].read_text())
    assert doc["title"] == "Test slab"
    assert doc["columns"] == ["method", "psnr", "ssim", "seconds", "note"]
    assert [r["psnr"] for r in doc["rows"][:2]] == [31.123456789, 33.987654321]
    assert float(doc["rows"][2]["psnr"]) == float("inf")  # strict JSON: written as "inf"
    assert doc["rows"][1]["ssim"] == float(np.float32(0.95))

    md = paths["md"].read_text()
    assert md.startswith("# Test slab\n")
    assert "31.12" in md and "a\\|b" in md


def test_format_markdown_is_a_table():
    md = tables.format_markdown(ROWS, float_format=".2f")
    lines = md.strip().split("\n")
    assert len(lines) == 2 + len(ROWS)
    assert lines[0].startswith("| method") and "psnr" in lines[0]
    assert set(lines[1]) <= set("|-: ")
    assert lines[1].count("|") == lines[0].count("|") == lines[4].count("|") - 1  # escaped pipe
    assert "33.99" in lines[3] and "inf" in lines[4]
    assert "---:" in lines[1]  # numbers right-aligned
    assert tables.format_markdown([]) == "_(no rows)_\n"


def test_write_table_refuses_to_overwrite_when_asked(tmp_path):
    tables.write_table(ROWS, tmp_path / "t")
    (tmp_path / "u.json").write_text("keep")
    with pytest.raises(OutputExistsError):
        tables.write_table(ROWS, tmp_path / "u", overwrite=False)
    assert not (tmp_path / "u.md").exists()  # nothing written before the check failed
    assert (tmp_path / "u.json").read_text() == "keep"
    with pytest.raises(InputError, match="list of dicts"):
        tables.write_table({"psnr": 1.0}, tmp_path / "v")


# --- figures ----------------------------------------------------------------------------------


def test_display_slice_puts_superior_and_anterior_up_and_right_on_the_right():
    vol = np.zeros((10, 12, 14))
    vol[9, 6, 7] = 1.0  # far right
    vol[5, 11, 7] = 2.0  # most anterior
    vol[5, 6, 13] = 3.0  # most superior
    axial = figures.display_slice(vol, 2, 7)
    assert axial.shape == (12, 10)
    assert axial[0, 5] == 2.0  # anterior on top
    assert axial[12 - 1 - 6, 9] == 1.0  # right on the right
    coronal = figures.display_slice(vol, 1, 6)
    assert coronal.shape == (14, 10) and coronal[0, 5] == 3.0  # superior on top
    sagittal = figures.display_slice(vol, 0, 5)
    assert sagittal.shape == (14, 12) and sagittal[0, 6] == 3.0
    assert sagittal[14 - 1 - 7, 11] == 2.0  # anterior on the right


def test_orthogonal_mosaic_writes_a_valid_png_with_distinct_panels(tmp_path, small_brain, rng):
    import matplotlib.pyplot as plt

    figures_before = plt.get_fignums()
    hr = small_brain
    blurred = np.zeros_like(hr)  # a panel that must look different
    noisy = hr + 0.3 * rng.standard_normal(hr.shape).astype(np.float32)
    out = figures.orthogonal_mosaic(
        {"blank": blurred, "noisy": noisy, "HR": hr},
        tmp_path / "mosaic.png",
        reference_key="HR",
        zoom_box=((4, 16), (6, 20), 10),
        title="test <mosaic>",
        dpi=60,
    )
    assert out == tmp_path / "mosaic.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(out)
    # 3 columns of 2.2 in + colour bar; rows 2.2 in x each view's aspect (h/w of a
    # (24, 28, 20) volume: sagittal 20/28, coronal 20/24, axial and error 28/24, zoom 1)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    heights = 2.2 * (20 / 28 + 20 / 24 + 2 * 28 / 24 + 1)
    assert heights * 60 <= img.shape[0] <= (heights + 2.0) * 60
    assert 3 * 2.2 * 60 <= img.shape[1] <= (3 * 2.2 + 1.5) * 60
    third = img.shape[1] // 3
    rows = slice(int(0.1 * img.shape[0]), int(0.55 * img.shape[0]))  # the image rows
    left, middle = img[rows, :third, :3], img[rows, third : 2 * third, :3]
    assert np.abs(left - middle).mean() > 0.01  # the blank and noisy panels differ
    assert left.std() > 0.01 and middle.std() > 0.01  # not blank images either
    assert plt.get_fignums() == figures_before  # no pyplot figure leaked


def test_orthogonal_mosaic_reorients_with_the_affine(tmp_path, small_brain):
    ras = figures.orthogonal_mosaic({"T1": small_brain}, tmp_path / "ras.png", dpi=40)
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])  # an LAI array of the same head
    flip[:3, 3] = [small_brain.shape[0] - 1, 0, small_brain.shape[2] - 1]
    lai = figures.orthogonal_mosaic(
        {"T1": small_brain[::-1, :, ::-1]}, tmp_path / "lai.png", affine=flip, dpi=40
    )
    assert np.array_equal(matplotlib.image.imread(ras), matplotlib.image.imread(lai))
    unflipped = figures.orthogonal_mosaic(
        {"T1": small_brain[::-1, :, ::-1]}, tmp_path / "raw.png", dpi=40
    )
    assert not np.array_equal(matplotlib.image.imread(ras), matplotlib.image.imread(unflipped))


def test_orthogonal_mosaic_errors(tmp_path, small_brain):
    with pytest.raises(InputError, match="share one grid"):
        figures.orthogonal_mosaic({"a": small_brain, "b": small_brain[:-2]}, tmp_path / "x.png")
    with pytest.raises(InputError, match="zoom_box"):
        figures.orthogonal_mosaic(
            {"a": small_brain}, tmp_path / "x.png", zoom_box=((0, 50), (0, 5), 3)
        )
    with pytest.raises(InputError, match="reference_key 'HR'"):
        figures.orthogonal_mosaic({"a": small_brain}, tmp_path / "x.png", reference_key="HR")
    assert not (tmp_path / "x.png").exists()


def test_training_curves_from_csv_with_gaps_and_from_dict(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "step,loss,val_psnr\n1,0.9,\n2,0.5,\n3,0.3,28.5\n4,0.2,\n5,0.15,30.1\n", encoding="utf-8"
    )
    png = figures.training_curves(log, tmp_path / "curves.png", dpi=50)
    assert matplotlib.image.imread(png).shape[1] == pytest.approx(2 * 4.0 * 50, abs=2)
    png2 = figures.training_curves({"loss": [1.0, 0.5, 0.25]}, tmp_path / "c2.png", dpi=50)
    assert matplotlib.image.imread(png2).shape[1] == pytest.approx(4.0 * 50, abs=2)
    with pytest.raises(InputError, match="none of"):
        figures.training_curves({"lr": [1e-3]}, tmp_path / "c3.png")


def test_metric_bars(tmp_path):
    rows = [
        {"method": "tricubic", "psnr": 30.0},
        {"method": "tricubic", "psnr": 31.0},
        {"method": "mDCSRN", "psnr": 33.0},
    ]
    png = figures.metric_bars(rows, "psnr", tmp_path / "bars.png", dpi=50)
    img = matplotlib.image.imread(png)[..., :3]
    # figsize (max(3, 0.9 * 2 bars + 1.5), 3.2) inches at 50 dpi
    assert img.shape == (160, 165, 3)
    # the bars (fill #4878a8) are two blocks of columns whose heights follow the means
    blue = np.all(np.abs(img - np.array([0x48, 0x78, 0xA8]) / 255) < 0.02, axis=-1)
    cols = np.flatnonzero(blue.any(axis=0))
    split = np.flatnonzero(np.diff(cols) > 1)
    assert len(split) == 1  # two bars, in first-seen order
    left, right = cols[: split[0] + 1], cols[split[0] + 1 :]
    heights = [blue[:, c].sum(axis=0).max() for c in (left, right)]
    assert heights[0] / heights[1] == pytest.approx(30.5 / 33.0, rel=0.03)  # tricubic's mean
    with pytest.raises(InputError, match="no row"):
        figures.metric_bars(rows, "ssim", tmp_path / "bars2.png")


# --- HTML -------------------------------------------------------------------------------------


def test_html_report_is_self_contained_escaped_and_has_provenance(tmp_path, small_brain):
    png = figures.orthogonal_mosaic({"HR": small_brain}, tmp_path / "fig.png", dpi=40)
    page = write_html_report(
        tmp_path / "report.html",
        title="SR <results> & more",
        sections=[
            {"heading": "Metrics", "text": "Inside the brain.\n\nSecond <i>para</i>.",
             "table_rows": ROWS},
            {"heading": "Figure", "images": [{"path": png, "caption": "mid-slices"}]},
        ],
        command="mrenhance demo --output out",
    )  # fmt: skip
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>SR &lt;results&gt; &amp; more</title>" in text
    assert "Second &lt;i&gt;para&lt;/i&gt;." in text and "<i>para" not in text
    # the table: a header cell per column and the formatted numbers
    assert "<th>psnr</th>" in text and "<td>mDCSRN</td>" in text and "33.99" in text
    assert text.count("<tr>") == 1 + len(ROWS)
    # the image is embedded, and it is the PNG we wrote
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert match is not None
    assert base64.b64decode(match.group(1)) == png.read_bytes()
    assert "<figcaption>mid-slices</figcaption>" in text
    # provenance
    from mrenhance import __version__

    assert f"<dd>{__version__}</dd>" in text
    assert "mrenhance demo --output out" in text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)


def test_html_report_rejects_unknown_section_keys_and_missing_images(tmp_path):
    with pytest.raises(InputError, match="unknown key"):
        write_html_report(tmp_path / "r.html", title="t", sections=[{"heading": "h", "txt": "x"}])
    with pytest.raises(InputError, match="image not found"):
        write_html_report(
            tmp_path / "r.html", title="t", sections=[{"images": [tmp_path / "missing.png"]}]
        )
    assert not (tmp_path / "r.html").exists()
