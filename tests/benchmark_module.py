"""Import a benchmark script (``benchmarks/<name>.py``) in a test."""

from __future__ import annotations


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module (benchmarks are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
