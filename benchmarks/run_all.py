"""Run every benchmark in turn (``make bench``); each writes benchmarks/results/<name>.json.

The SR table trains seven networks at a CPU budget (about an hour on 2 cores); pass
``--quick`` to run only the inference-speed and reliability benchmarks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    scripts = ["infer_speed.py", "reliability_counts.py"]
    if not quick:
        scripts = ["sr_t1_table.py", *scripts]
    failed = []
    for script in scripts:
        print(f"\n=== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)], check=False).returncode:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
