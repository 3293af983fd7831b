"""benchmarks/asl_table.py: the paper's claims judged from paired per-subject differences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_module import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "asl_table.json"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("asl_table")


def _row(method: str, psnr: list[float], **other: list[float]) -> dict:
    per = {"psnr": psnr, **other}
    return {
        "method": method,
        "test_data": "outliers (10 % of pairs)",
        **{k: sum(v) / len(v) for k, v in per.items()},
        "per_subject": per,
    }


def test_paired_difference_signs(bench):
    assert bench.paired([2.0, 3.0, 2.5], [1.0, 2.0, 1.4])["sign"] == "better"
    assert bench.paired([1.0, 2.0, 1.4], [2.0, 3.0, 2.5])["sign"] == "worse"
    # a large mean difference with a larger spread is a tie, not a win
    tie = bench.paired([5.0, -3.0, 4.0], [0.0, 0.0, 0.0])
    assert tie["sign"] == "tie" and tie["mean_diff"] == pytest.approx(2.0)
    assert bench.paired([1.0], [0.0])["sign"] == "tie"  # one subject: no standard error


def test_better_claims_need_significance_and_not_worse_claims_fail_only_on_a_loss(bench):
    rows = [
        _row("DWAN LFN (L1)", [20.0, 21.0, 19.0, 20.5], snr=[6.0, 6.1, 5.9, 6.0]),
        _row("DWAN ASLDN", [20.1, 20.9, 19.2, 20.4], snr=[5.0, 5.2, 4.9, 5.1]),
    ]
    by = {(c["metric"], c["needs"]): c for c in bench.claims(rows) if c["b"] == "DWAN ASLDN"}
    psnr = by[("psnr", "not worse")]
    assert psnr["sign"] == "tie" and psnr["holds"] is True  # a tie is "at least as good"
    snr = by[("snr", "better")]
    assert snr["sign"] == "better" and snr["holds"] is True
    assert by[("ssim", "not worse")]["holds"] is None  # no ssim in these rows
    # a tie does not make a "better" claim hold
    tied = [
        _row("DWAN LFN (L1)", [20.0, 21.0, 19.0], snr=[6.0, 5.0, 6.0]),
        _row("DWAN ASLDN", [20.0, 21.0, 19.0], snr=[5.0, 6.0, 5.9]),
    ]
    (snr,) = [c for c in bench.claims(tied) if c["metric"] == "snr"]
    assert snr["sign"] == "tie" and snr["holds"] is False


def test_missing_rows_are_unjudged_not_failed(bench):
    out = bench.claims([_row("DWAN LFN (L1)", [1.0, 2.0])])
    assert all(c["holds"] is None and c["sign"] == "missing row" for c in out)
    assert "missing" in bench.claims_markdown(out)


def test_committed_claims_are_the_ones_the_rows_give(bench):
    payload = json.loads(RESULTS.read_text())
    meta = payload["provenance"]
    per = meta["per_subject"]
    rows = [
        {**r, "per_subject": per[f"{r['test_data']}|{r['method']}"]}
        for r in payload["rows"]
        if f"{r['test_data']}|{r['method']}" in per
    ]
    assert bench.claims(rows) == meta["claims"]
    # every claim of the paper is judged (none missing) and the Markdown shows them
    assert all(c["holds"] is not None for c in meta["claims"])
    md = RESULTS.with_suffix(".md").read_text()
    assert "## The paper's claims" in md
    for c in meta["claims"]:
        assert c["claim"] in md
    # the shipped model's row is the shipped weights
    from mrenhance.models.weights import read_card, resolve_weights

    assert meta["shipped_sha256"] == read_card(resolve_weights("dwan-asl-lfn")).sha256


def test_card_steps_add_every_recorded_stage(bench):
    training = {"steps": 500, "stage_b": {"steps": 1500}, "stage_a": {"steps": 1500}}
    assert bench.card_steps(training) == 3500
    assert bench.card_steps({"steps": 40}) == 40
    assert bench.card_steps({"stage": "supervised (L1)", "steps": 10}) == 10  # a label, not a stage
