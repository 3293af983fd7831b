"""benchmarks/dti_table.py: its findings from the rows, the committed results, the docs and
the cards that quote them."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from pathlib import Path

import pytest

from benchmark_module import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dti_table.json"
NETS = ("srresnet-dwi-x4", "srgan-dwi-x4")
SIM_KEYS = ("psnr", "ssim", "sharpness", "fa_mae_wm", "md_mae_wm", "angle_wm_deg")


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("dti_table")


@pytest.fixture(scope="module")
def payload():
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def _row(method, psnr, ssim, sharp, fa, md, v1, where="simulated"):
    return {"set": where, "method": method, "psnr": psnr, "ssim": ssim, "sharpness": sharp,
            "fa_mae_wm": fa, "md_mae_wm": md, "angle_wm_deg": v1}  # fmt: skip


BICUBIC = _row("bicubic", 32.0, 0.75, 0.43, 0.13, 0.10, 5.0)


def test_bicubic_winning_everywhere_is_a_no_for_srresnet_and_the_paper_finding_holds(bench):
    rows = [
        BICUBIC,
        _row("srresnet-dwi-x4", 31.9, 0.74, 0.58, 0.14, 0.16, 6.1),
        _row("srgan-dwi-x4", 30.8, 0.70, 0.62, 0.16, 0.42, 6.6),
    ]
    assert bench.findings(rows) == {
        "paper_finding_holds": True,
        "srgan_below_bicubic_psnr_ssim": True,
        "srgan_sharper_than_bicubic": True,
        "srresnet_beats_bicubic_psnr_ssim": False,
        "srresnet_beats_bicubic_fa_md_wm": False,
        "srresnet_beats_bicubic_v1_wm": False,
    }


def test_srresnet_winning_is_a_yes_and_an_srgan_above_bicubic_breaks_the_paper(bench):
    rows = [
        BICUBIC,
        _row("srresnet-dwi-x4", 32.5, 0.78, 0.6, 0.12, 0.09, 4.5),
        _row("srgan-dwi-x4", 32.1, 0.70, 0.62, 0.16, 0.42, 6.6),  # PSNR above bicubic
    ]
    found = bench.findings(rows)
    assert found["srresnet_beats_bicubic_psnr_ssim"] is True
    assert found["srresnet_beats_bicubic_fa_md_wm"] is True
    assert found["srresnet_beats_bicubic_v1_wm"] is True
    assert found["srgan_below_bicubic_psnr_ssim"] is False  # below on SSIM only: not both
    assert found["srgan_sharper_than_bicubic"] is True
    assert found["paper_finding_holds"] is False
    # one of the two tensor errors better is not "beats on FA/MD"
    rows[1] = _row("srresnet-dwi-x4", 32.5, 0.78, 0.6, 0.12, 0.11, 4.5)
    assert bench.findings(rows)["srresnet_beats_bicubic_fa_md_wm"] is False


def test_a_tie_is_not_a_win_and_real_rows_do_not_count(bench):
    tie = {**BICUBIC, "method": "srresnet-dwi-x4"}
    gan = {**BICUBIC, "method": "srgan-dwi-x4"}
    found = bench.findings([BICUBIC, tie, gan])
    assert not any(found.values()) and len(found) == 6
    # the real-data rows of the same methods are not the findings' basis
    real = [
        _row("bicubic", 35.0, 0.8, 0.2, 0.2, 0.3, 22.0, where="real small_64D"),
        _row("srresnet-dwi-x4", 40.0, 0.9, 0.3, 0.1, 0.1, 1.0, where="real small_64D"),
    ]
    assert bench.findings([*real, BICUBIC, tie, gan]) == found
    # a missing network is no finding, and the .md says so rather than answering
    partial = bench.findings([BICUBIC, tie])
    assert set(partial) == {
        "srresnet_beats_bicubic_psnr_ssim",
        "srresnet_beats_bicubic_fa_md_wm",
        "srresnet_beats_bicubic_v1_wm",
    }
    text = "\n".join(bench.findings_md([BICUBIC, tie]))
    assert "sharper than bicubic (gradient ratio to the HR): **not measured**" in text
    assert "SRResNet above bicubic on PSNR and SSIM: **no**" in text


def test_the_committed_findings_are_the_ones_their_rows_give(bench, payload):
    rows, meta = payload["rows"], payload["provenance"]
    assert meta["findings"] == bench.findings(rows)
    assert len(meta["findings"]) == 6  # every network was measured
    md = RESULTS.with_suffix(".md").read_text(encoding="utf-8")
    for key, value in meta["findings"].items():
        question = bench.QUESTIONS[key][0]
        assert f"- {question}: **{'yes' if value else 'no'}** (" in md


def test_the_committed_json_md_and_csv_hold_the_same_rows(bench, payload):
    rows, meta = payload["rows"], payload["provenance"]
    md = RESULTS.with_suffix(".md").read_text(encoding="utf-8")
    assert md == bench.render_md(rows, meta)  # table, findings and provenance of the json
    with open(RESULTS.with_suffix(".csv"), newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows)
    for line, row in zip(table, rows, strict=True):
        parsed = {k: v for k, v in line.items() if v != ""}
        assert parsed.keys() == row.keys()
        for key, value in row.items():
            if isinstance(value, str):
                assert parsed[key] == value
            else:
                assert float(parsed[key]) == value, (row["set"], row["method"], key)
    sets = {(r["set"], r["method"]) for r in rows}
    for where in ("simulated", "real small_64D", "real b0"):
        assert {(where, m) for m in ("bicubic", *NETS)} <= sets


def test_the_committed_run_names_the_shipped_weights_by_sha256(payload):
    from mrenhance.models.weights import read_card, resolve_weights

    meta = payload["provenance"]
    assert not meta["git_commit"].endswith("-dirty")  # a run of committed code
    assert set(meta["weights"]) == set(NETS)
    for name in NETS:
        path = resolve_weights(name)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert meta["weights"][name]["sha256"] == digest == read_card(path).sha256


def _cells(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first Markdown table after ``heading`` (cells stripped of
    ``**`` and backticks; an empty first cell repeats the row above's)."""
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    block = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        block.append(ln)
    out, first = [], ""
    for ln in block[2:]:
        cells = [c.strip().replace("**", "").strip("`") for c in ln.strip("|").split("|")]
        first = cells[0] or first
        out.append([first, *cells[1:]])
    return out


def _agrees(cell: str, value: float) -> bool:
    """``cell`` is ``value`` rounded to the decimals the cell shows."""
    decimals = len(cell.split(".")[1]) if "." in cell else 0
    return abs(float(cell) - value) <= 0.5 * 10**-decimals + 1e-9


def test_the_docs_tables_are_the_committed_rows():
    """docs/dti.md's two tables quote benchmarks/results/dti_table.json at their rounding."""
    rows = json.loads(RESULTS.read_text(encoding="utf-8"))["rows"]
    by = {(r["set"], r["method"]): r for r in rows}
    docs = (ROOT / "docs" / "dti.md").read_text(encoding="utf-8")
    sim_cols = ("psnr", "ssim", "sharpness", "fa_mae_wm", "fa_mae_gm", "md_mae_wm",
                "md_mae_gm", "md_mae_csf", "angle_wm_deg")  # fmt: skip
    checked = 0
    for cells in _cells(docs, "**Simulated test set**"):
        method = cells[0].split(" ")[0].strip("`")
        if method == "paper,":
            continue
        row = by[("simulated", method)]
        for key, cell in zip(sim_cols, cells[1:], strict=True):
            assert _agrees(cell, row[key]), (method, key, cell, row[key])
            checked += 1
    sets = {"small_64D": "real small_64D", "S0_10slices": "real b0"}
    real_cols = ("psnr", "ssim", "sharpness", "fa_mae_wm", "md_mae_wm", "angle_wm_deg")
    for cells in _cells(docs, "**Real data**"):
        row = by[(sets[cells[0].split(" ")[0].strip("`")], cells[1])]
        for key, cell in zip(real_cols, cells[2:], strict=True):
            if cell != "-":
                assert _agrees(cell, row[key]), (cells[:2], key, cell, row[key])
                checked += 1
    sets["simulated"] = "simulated"
    for cells in _cells(docs, "**Intensity bias**"):
        row = by[(sets[cells[0].split(" ")[0].strip("`")], cells[1])]
        for key, cell in zip(("b0_ratio", "dw_ratio"), cells[2:], strict=True):
            if cell != "-":
                assert _agrees(cell, row[key]), (cells[:2], key, cell, row[key])
                checked += 1
    assert checked == 3 * 9 + 3 * 6 + 3 * 3 + 3 * 2 + 3 * 2 + 3


def test_the_readme_table_is_the_committed_rows():
    rows = json.loads(RESULTS.read_text(encoding="utf-8"))["rows"]
    by = {r["method"]: r for r in rows if r["set"] == "simulated"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    cols = ("psnr", "ssim", "sharpness", "fa_mae_wm", "md_mae_wm", "angle_wm_deg")
    table = _cells(readme, "## Results: DWI super-resolution 4x")
    assert [c[0] for c in table] == ["bicubic", *NETS]
    for cells in table:
        for key, cell in zip(cols, cells[1:7], strict=True):
            assert _agrees(cell, by[cells[0]][key]), (cells[0], key, cell)


# The numbers a DTI card's limitations quote: pattern -> (set, method, metric) of each group
# ("net" is the card's own network).
_SIM, _SMALL, _B0 = "simulated", "real small_64D", "real b0"
_QUOTES = {
    r"small_64D PSNR (\S+) vs (\S+) dB": [(_SMALL, "net", "psnr"), (_SMALL, "bicubic", "psnr")],
    r"V1 error in WM (\S+) vs (\S+) degrees;": [
        (_SMALL, "net", "angle_wm_deg"),
        (_SMALL, "bicubic", "angle_wm_deg"),
    ],
    r"S0_10slices b0 PSNR (\S+) vs (\S+) dB": [(_B0, "net", "psnr"), (_B0, "bicubic", "psnr")],
    r"simulated test set \(PSNR (\S+) vs (\S+) dB": [
        (_SIM, "net", "psnr"),
        (_SIM, "bicubic", "psnr"),
    ],
    r"MD error in WM (\S+) vs (\S+) um\^2/ms": [
        (_SIM, "net", "md_mae_wm"),
        (_SIM, "bicubic", "md_mae_wm"),
    ],
    r"V1 error in WM (\S+) vs (\S+) degrees\)": [
        (_SIM, "net", "angle_wm_deg"),
        (_SIM, "bicubic", "angle_wm_deg"),
    ],
    r"simulated test set b0 (\S+), DW (\S+), bicubic b0 (\S+), DW (\S+);": [
        (_SIM, "net", "b0_ratio"),
        (_SIM, "net", "dw_ratio"),
        (_SIM, "bicubic", "b0_ratio"),
        (_SIM, "bicubic", "dw_ratio"),
    ],
    r"real S0_10slices b0 (\S+), bicubic (\S+)\)": [
        (_B0, "net", "b0_ratio"),
        (_B0, "bicubic", "b0_ratio"),
    ],
    r"small_64D its output collapses \(b0 (\S+), DW (\S+)\)": [
        (_SMALL, "net", "b0_ratio"),
        (_SMALL, "net", "dw_ratio"),
    ],
}


def test_the_cards_limitations_quote_the_committed_rows(payload):
    from mrenhance.models.weights import read_card, resolve_weights

    by = {(r["set"], r["method"]): r for r in payload["rows"]}
    for name in NETS:
        text = " ".join(read_card(resolve_weights(name)).limitations)
        assert "benchmarks/results/dti_table.json" in text, name
        for pattern, quoted in _QUOTES.items():
            found = re.findall(pattern, text)
            assert len(found) == 1, (name, pattern)
            for cell, (where, method, key) in zip(found[0], quoted, strict=True):
                value = by[(where, name if method == "net" else method)][key]
                assert _agrees(cell, value), (name, pattern, key, cell, value)
        # the MD excess the b0 bias implies: ln(b0 ratio / DW ratio) / b at b = 1000
        sim = by[(_SIM, name)]
        shift = re.search(r"~(\S+)e-3 mm\^2/s at b = 1000", text).group(1)
        assert _agrees(shift, math.log(sim["b0_ratio"] / sim["dw_ratio"])), name
