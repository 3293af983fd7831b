"""The memory benchmark runs the real command and reads back its tile plan."""

from __future__ import annotations

import pytest

from benchmark_module import load_benchmark


@pytest.mark.slow
def test_bench_memory_measures_one_command_run(tmp_path):
    pytest.importorskip("nilearn")
    bench = load_benchmark("bench_memory")
    assert bench._volume(30).shape == (30, 30, 30)
    row = bench.run_one(24, "fp32", 1, str(tmp_path))
    assert row["plan"].startswith("exact patch=[")
    assert row["peak_rss_mb"] > 0 and row["rss_over_in_plus_out"] > 1
    assert list(tmp_path.iterdir()) == []  # its input and output are removed
