"""The HTML report's viewer payload, ``mrenhance report DIR`` and ``enhance --report``."""

from __future__ import annotations

import base64
import json
import re
import zlib

import numpy as np
import pytest

from mrenhance import Volume
from mrenhance.cli import main
from mrenhance.errors import InputError
from mrenhance.io import save
from mrenhance.models import create_model
from mrenhance.models.weights import save_weights
from mrenhance.report.html import write_html_report
from mrenhance.report.viewer import viewer_case


def _unpack(entry: dict, shape) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(entry["data"]))
    return np.frombuffer(raw, np.uint8).reshape(shape, order="F")


def _payloads(html: str) -> list[dict]:
    found = re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.S)
    return [json.loads(p) for p in found]


def test_viewer_case_crops_quantises_and_numbers_slices_as_the_volume(small_brain):
    hr = np.zeros((40, 44, 30), np.float32)
    hr[8:32, 8:36, 5:25] = small_brain  # foreground in a larger field of view
    lr = hr + 0.01
    case = viewer_case({"LR": lr, "HR": hr}, reference="HR", offset=(0, 0, 100))
    # cropped to the foreground plus 4 voxels; the offset moves with the crop
    shape = tuple(case["shape"])
    assert shape[0] < 40 and case["offset"][2] >= 100
    assert [e["name"] for e in case["images"]] == ["LR", "HR", "|LR - HR|"]
    assert [e["kind"] for e in case["images"]] == ["image", "image", "error"]
    q_hr = _unpack(case["images"][1], shape)
    lo, hi = case["range"]
    x0, y0, z0 = (o - b for o, b in zip(case["offset"], (0, 0, 100), strict=True))
    back = lo + q_hr.astype(np.float32) * (hi - lo) / 255
    crop = hr[x0 : x0 + shape[0], y0 : y0 + shape[1], z0 : z0 + shape[2]]
    # quantised to 255 levels over the range (whose top is the 99.99th percentile)
    np.testing.assert_allclose(back, np.minimum(crop, hi), atol=(hi - lo) / 255)
    # the |error| map is 0.01 everywhere, so it quantises to one level
    err = _unpack(case["images"][2], shape)
    assert err.min() == err.max()
    with pytest.raises(InputError, match="one grid"):
        viewer_case({"a": hr, "b": hr[:-1]})
    with pytest.raises(InputError, match="not an image"):
        viewer_case({"a": hr}, reference="b")


def test_viewer_case_strides_large_volumes_and_keeps_voxel_aspect():
    vol = np.random.default_rng(0).random((60, 60, 60), dtype=np.float32)
    case = viewer_case({"a": vol}, crop_foreground=False, max_voxels=30**3,
                       affine=np.diag([1.0, 1.0, 2.5, 1.0]))  # fmt: skip
    assert case["stride"] == 2 and case["shape"] == [30, 30, 30]
    assert case["voxel_mm"] == [2.0, 2.0, 5.0]


def test_html_report_embeds_the_viewer_script_once_and_escapes_names(tmp_path, small_brain):
    page = write_html_report(
        tmp_path / "r.html",
        title="t",
        sections=[
            {"heading": "a", "viewers": {"images": {"</script><b>x": small_brain}}},
            {"heading": "b", "viewers": [{"images": {"y": small_brain}}],
             "cards": [{"name": "m", "sha256": "abc"}], "provenance": {"y": ["load y"]}},
        ],
    )  # fmt: skip
    text = page.read_text(encoding="utf-8")
    assert text.count("class Viewer") == 1 and text.count('class="mrv"') == 2
    assert "<b>x" not in text  # a name cannot close the script element or inject markup
    assert _payloads(text)[0]["images"][0]["name"] == "</script><b>x"
    assert "model card: m" in text and "load y" in text


def test_report_folder_cli_finds_images_reference_metrics_and_sidecars(tmp_path, small_brain):
    folder = tmp_path / "results"
    (folder / "sub").mkdir(parents=True)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    save(Volume(small_brain, affine), folder / "hr.nii.gz")
    save(Volume(small_brain * 0.9, affine), folder / "sub" / "sr.nii.gz")
    save(Volume(small_brain[:10], affine), folder / "other.nii.gz")  # another grid
    (folder / "sub" / "sr.json").write_text(json.dumps({"Sources": ["hr.nii.gz"]}))
    (folder / "metrics.json").write_text(json.dumps({"rows": [{"method": "sr", "psnr": 30.5}]}))
    assert main(["report", str(folder)]) == 0
    text = (folder / "report.html").read_text(encoding="utf-8")
    cases = _payloads(text)
    assert len(cases) == 2
    names = [e["name"] for e in cases[0]["images"]]
    assert names == ["sub/sr", "hr", "|sub/sr - hr|"]  # the reference last, then the errors
    assert "30.50" in text and "Sources" in text
    assert main(["report", str(folder), "--reference", "nope"]) == 2


def test_enhance_report_shows_input_output_and_change(tmp_path, small_brain):
    src = tmp_path / "t1.nii.gz"
    save(Volume(small_brain * 200, np.eye(4)), src)
    card = {"task": "sr_t1", "inference": {"patch_size": 16, "overlap": 4, "blend": "crop"}}
    weights = save_weights(create_model("mdcsrn-b2u4", growth=4), tmp_path / "tiny.safetensors",
                           card)  # fmt: skip
    out = tmp_path / "out" / "sr.nii.gz"
    out.parent.mkdir()
    args = ["enhance", str(src), "-o", str(out), "--model", str(weights), "-q", "--report"]
    assert main(args) == 0
    report = tmp_path / "out" / "sr_report.html"
    cases = _payloads(report.read_text(encoding="utf-8"))
    assert [e["name"] for e in cases[0]["images"]] == [
        "input t1.nii.gz",
        "output (tiny)",
        "|output - input|",
    ]
