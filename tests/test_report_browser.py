"""The demo report in a real browser: headless Chromium moves the slider and switches axis.

Skipped when no Chromium is installed (``apt-get install chromium``, or set
``MRENHANCE_CHROMIUM`` to a Chrome/Chromium binary).
"""

from __future__ import annotations

import pytest

from mrenhance.report.browser import Browser, find_chromium

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_chromium() is None, reason="no chromium installed"),
]

FIRST_CANVAS = "document.querySelector('.mrv canvas')"
# a fingerprint of what the first panel shows: its size and a sum over its pixels
SHOWN = f"""(() => {{ const c = {FIRST_CANVAS}; const d = c.getContext('2d')
  .getImageData(0, 0, c.width, c.height).data; let s = 0;
  for (let i = 0; i < d.length; i += 4) s += d[i] * ((i >> 2) % 7 + 1);
  return [c.width, c.height, s]; }})()"""


def _rect(browser: Browser, selector: str) -> dict:
    return browser.eval(
        f"(() => {{ const e = document.querySelector({selector!r});"
        " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
        " return {x: r.x, y: r.y, w: r.width, h: r.height}; })()"
    )


def _errors(browser: Browser) -> list:
    return [c for c in browser.console if c[0] in ("error", "exception")]


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    from mrenhance.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, networks=False, echo=False, tasks=["sr_t1"], overwrite=True)["html"]


def test_demo_report_slider_axis_and_zoom_in_chromium(demo_report, tmp_path):
    assert demo_report.stat().st_size < 20e6
    text = demo_report.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text  # nothing to fetch

    with Browser() as browser:
        browser.open(demo_report)
        browser.wait_for("document.body.dataset.viewersReady === '1'")
        root = "document.querySelector('.mrv')"
        assert browser.eval(f"{root}.dataset.axis") == "axial"
        slice0 = int(browser.eval(f"{root}.dataset.slice"))
        assert 96 <= slice0 < 128  # a volume index inside the test slab, not a slab index
        shown0 = browser.eval(SHOWN)

        # drag the slice slider with the mouse
        r = _rect(browser, ".mrv .slider")
        browser.drag(
            r["x"] + r["w"] / 2, r["y"] + r["h"] / 2, r["x"] + r["w"] * 0.9, r["y"] + r["h"] / 2
        )
        slice1 = int(browser.eval(f"{root}.dataset.slice"))
        assert slice1 > slice0
        shown1 = browser.eval(SHOWN)
        assert shown1[2] != shown0[2]  # the panel shows another slice

        # switch the axis with a mouse click
        b = _rect(browser, ".mrv button[data-axis=coronal]")
        browser.mouse("mousePressed", b["x"] + b["w"] / 2, b["y"] + b["h"] / 2, buttons=1)
        browser.mouse("mouseReleased", b["x"] + b["w"] / 2, b["y"] + b["h"] / 2)
        assert browser.eval(f"{root}.dataset.axis") == "coronal"
        shown2 = browser.eval(SHOWN)
        assert shown2[:2] != shown1[:2]  # a coronal slice of a slab: another shape
        assert "y = " in browser.eval(f"{root}.querySelector('.slice-number').textContent")

        # zoom 4x: the view follows the pointer and the readout names the voxel
        browser.eval(
            "(() => { const z = document.querySelector('.mrv select.zoom'); z.value = '4';"
            " z.dispatchEvent(new Event('change')); })()"
        )
        c = _rect(browser, ".mrv canvas")
        browser.mouse("mouseMoved", c["x"] + c["w"] * 0.3, c["y"] + c["h"] * 0.5)
        left = browser.eval(SHOWN)
        browser.mouse("mouseMoved", c["x"] + c["w"] * 0.7, c["y"] + c["h"] * 0.5)
        right = browser.eval(SHOWN)
        assert left[2] != right[2]
        assert browser.eval(f"{root}.querySelector('.readout').textContent").startswith("voxel (")

        browser.screenshot(tmp_path / "report.png")
        assert _errors(browser) == []
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
