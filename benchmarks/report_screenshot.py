"""Screenshot of the demo report's viewer in headless Chromium (for the README).

    .venv/bin/mrenhance demo --output demo_output
    .venv/bin/python benchmarks/report_screenshot.py demo_output/report.html

Opens the report, waits for the viewer, picks the view and zoom (``--axis``, ``--zoom``),
moves the pointer over the first panel, and writes
``benchmarks/results/report_viewer.png`` (the viewer element only). Prints its provenance
like every benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys

from _common import RESULTS, provenance

from mrenhance.report.browser import Browser, find_chromium


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="a report.html written by mrenhance demo")
    parser.add_argument("-o", "--output", default=str(RESULTS / "report_viewer.png"))
    parser.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"))
    parser.add_argument("--zoom", default="1", choices=("1", "2", "4", "8"))
    args = parser.parse_args()
    if find_chromium() is None:
        print("no chromium found: apt-get install chromium", file=sys.stderr)
        return 2
    print(json.dumps(provenance(), indent=2))
    with Browser(width=1500, height=1100) as browser:
        browser.open(args.report)
        browser.wait_for("document.body.dataset.viewersReady === '1'", timeout=120)
        browser.eval(f"document.querySelector('.mrv button[data-axis={args.axis}]').click()")
        browser.eval(
            "(() => { const z = document.querySelector('.mrv select.zoom');"
            f" z.value = '{args.zoom}'; z.dispatchEvent(new Event('change')); }})()"
        )
        r = browser.eval(
            "(() => { const e = document.querySelector('.mrv canvas');"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x, r.y, r.width, r.height]; })()"
        )
        browser.mouse("mouseMoved", r[0] + r[2] * 0.62, r[1] + r[3] * 0.4)
        browser.screenshot(args.output, selector=".mrv")
        errors = [c for c in browser.console if c[0] in ("error", "exception")]
    print(f"wrote {args.output}; console errors: {errors or 'none'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
