"""benchmarks/dsc_table.py: the paper's claims, computed from the rows (not written by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_module import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dsc_table.json"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("dsc_table")


def _rows(l1: dict[tuple[str, float, str], float]) -> list[dict]:
    return [{"method": m, "dose": d, "reference": r, "l1": v} for (m, d, r), v in l1.items()]


def _paper_like(stunet: float, hess: float, osvd: float) -> dict:
    values = {}
    for d in (1.0, 0.5, 0.25):
        for ref in ("osvd", "truth"):
            values[("stU-Net", d, ref)] = stunet
            values[("Hess-style", d, ref)] = hess
            values[("oSVD", d, ref)] = None if (d == 1.0 and ref == "osvd") else osvd
    return values


def test_claims_hold_on_rows_like_the_papers(bench):
    found = bench.claims(_rows(_paper_like(stunet=0.18, hess=0.34, osvd=0.46)))
    assert [c["verdict"] for c in found] == ["holds", "holds", "holds"]


def test_claims_fail_where_the_rows_say_so_and_missing_rows_are_incomplete(bench):
    found = bench.claims(_rows(_paper_like(stunet=0.6, hess=0.4, osvd=0.2)))
    assert [c["verdict"] for c in found] == ["does not hold"] * 3
    # one dose better than Hess is not "every dose"
    values = _paper_like(stunet=0.3, hess=0.4, osvd=0.2)
    values[("stU-Net", 0.5, "osvd")] = 0.5
    assert bench.claims(_rows(values))[1]["verdict"] == "does not hold"
    # a network beating oSVD against the truth at one dose is enough for claim 3
    values[("Hess-style", 0.25, "truth")] = 0.1
    assert bench.claims(_rows(values))[2]["verdict"] == "holds"
    # no stU-Net row at quarter dose: claim 1 cannot be decided
    del values[("stU-Net", 0.25, "osvd")]
    assert bench.claims(_rows(values))[0]["verdict"] == "incomplete"


def test_the_committed_results_store_the_claims_their_rows_give(bench):
    payload = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert payload["provenance"]["claims"] == bench.claims(payload["rows"])
    md = (RESULTS.with_suffix(".md")).read_text(encoding="utf-8")
    for c in payload["provenance"]["claims"]:
        assert f"{c['claim']}: **{c['verdict']}**" in md
