"""benchmarks/pvs_table.py: the paper-ordering verdict, old results, the training budget."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from benchmark_module import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pvs_table.json"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("pvs_table")


def test_the_ordering_holds_only_with_every_ranked_network(bench):
    full = {"DCNN6+SC+B": 38.7, "DCNN4+SC+B": 38.4, "DCNN2+SC+B": 38.0, "DCNN": 37.6, "SRCNN": 36.4}
    verdict = bench.ordering_verdict(full)
    assert verdict["verdict"] == "holds" and verdict["holds"] is True
    assert verdict["missing"] == [] and verdict["compared"] == " > ".join(bench.ORDER)


def test_two_networks_in_order_are_incomplete_not_a_pass(bench):
    verdict = bench.ordering_verdict({"DCNN6+SC+B": 27.4, "DCNN": 24.3, "Frangi": 29.8})
    assert verdict["verdict"] == "incomplete" and verdict["holds"] is None
    assert verdict["missing"] == ["DCNN4+SC+B", "DCNN2+SC+B", "SRCNN"]
    assert verdict["compared"] == "DCNN6+SC+B > DCNN"


def test_a_present_pair_out_of_order_fails_whatever_is_missing(bench):
    verdict = bench.ordering_verdict({"DCNN6+SC+B": 24.0, "DCNN": 24.3, "SRCNN": math.nan})
    assert verdict["verdict"] == "does not hold" and verdict["holds"] is False
    assert verdict["violations"] == ["DCNN6+SC+B <= DCNN"]
    # a NaN or missing PSNR is a missing row, not a comparison
    assert "SRCNN" in verdict["missing"]


def test_the_committed_results_state_the_verdict_of_their_own_rows(bench):
    """The committed table holds every Table 1 network, and its stored verdict is the one its
    rows give (recomputed, not copied)."""
    payload = json.loads(RESULTS.read_text(encoding="utf-8"))
    verdict = bench.verdict_of_results(payload)
    assert verdict["missing_rows"] == [] and verdict["missing"] == []
    assert verdict["verdict"] in ("holds", "does not hold")
    meta = payload["provenance"]
    assert meta["paper_ordering_verdict"] == verdict["verdict"]
    assert meta["paper_ordering_holds"] is verdict["holds"]
    assert meta["paper_ordering_violations"] == verdict["violations"]
    # and a file without some rows reads as incomplete, not as a pass
    payload["rows"] = [r for r in payload["rows"] if r["method"] != "SRCNN"]
    partial = bench.verdict_of_results(payload)
    assert "SRCNN" in partial["missing_rows"] and partial["verdict"] != "holds"


def test_the_default_budget_is_the_shipped_cards(bench):
    """--train-missing at the defaults trains the missing ablations as dcnn-pvs was trained."""
    card = json.loads((ROOT / "src/mrenhance/weights/dcnn-pvs.json").read_text(encoding="utf-8"))
    budget = RESULTS.read_text(encoding="utf-8")
    assert '"steps": 200' in budget and '"patch": 16' in budget
    assert (bench.DEFAULT_STEPS, bench.DEFAULT_PATCH) == (200, 16)
    ours = bench.budget_overrides("dcnn6-sc-b", bench.DEFAULT_STEPS, bench.DEFAULT_PATCH)
    assert bench.same_overrides(card["training"]["overrides"], ours)
    assert not bench.same_overrides(
        card["training"]["overrides"], bench.budget_overrides("dcnn6-sc-b", 300, 16)
    )


def test_train_missing_trains_only_what_has_no_weights(bench, tmp_path, monkeypatch):
    import mrenhance.training

    calls = []
    monkeypatch.setattr(
        mrenhance.training,
        "train_recipe",
        lambda recipe, overrides, **kw: calls.append((recipe, overrides, kw["run_dir"])),
    )
    (tmp_path / "dcnn1").mkdir()
    (tmp_path / "dcnn1" / "dcnn1.safetensors").write_bytes(b"")
    argv = ["pvs_table.py", "--train-missing", "--models", "DCNN,SRCNN", "--runs", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    assert calls == [("pvs_dcnn", bench.budget_overrides("srcnn3d", 200, 16), tmp_path / "srcnn3d")]
