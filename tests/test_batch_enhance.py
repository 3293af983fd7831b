"""``mrenhance enhance`` on a folder or a list: each file on its own, failures summarised.

A bad file must not take down the batch: every good file is written, every bad one is
reported (stderr line + JSON summary), and the exit code is 1 if any failed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bad_inputs.build import build, make_tiny_weights, smooth_image, snapshot, write_nifti
from mrenhance.cli import main


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


def _mixed_folder(root: Path) -> tuple[Path, list[str], list[str]]:
    """scans/ with 3 good NIfTIs and 3 bad ones (truncated, NaN, 2D); names of each."""
    scans = root / "scans"
    scans.mkdir()
    good = []
    for i in range(3):
        write_nifti(scans / f"good{i}.nii.gz", smooth_image(seed=i))
        good.append(f"good{i}")
    for name in ("truncated_nii_gz", "nan_voxels", "2d_image"):  # cut, nan, slice
        (root / name).mkdir()
        c = build(name, root / name)  # each case in its own folder, its input moved in
        src = Path(c.argv[1])
        shutil.move(src, scans / src.name)
    return scans, good, ["cut", "nan", "slice"]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_a_folder_with_bad_files_writes_every_good_one_and_reports_the_rest(
    tmp_path: Path, out_dir: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]
):
    scans, good, bad = _mixed_folder(tmp_path)
    before = snapshot(scans)
    summary = tmp_path / "summary.json"

    rc = main(["enhance", str(scans), "-o", str(out_dir), "--model", str(tiny_weights), "-q",
               "--summary", str(summary)])  # fmt: skip

    err = capsys.readouterr().err
    assert rc == 1
    for stem in good:
        out = nib.load(out_dir / f"{stem}_enhanced.nii.gz")
        assert out.shape == (12, 14, 10)
        assert np.isfinite(out.get_fdata()).all()
    # each good output with its JSON provenance sidecar, nothing for the bad ones
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        n for s in good for n in (f"{s}_enhanced.nii.gz", f"{s}_enhanced.json")
    )
    report = json.loads(summary.read_text())
    assert report["failed"] == 3
    status = {Path(r["input"]).name.split(".")[0]: r for r in report["results"]}
    assert {k for k, r in status.items() if r["status"] == "ok"} == set(good)
    for stem in bad:
        assert status[stem]["status"] == "failed"
        assert str(scans / stem) in status[stem]["error"]  # names the file
        assert f"{stem}" in err
    assert "truncated" in status["cut"]["error"]
    assert "3 NaN/Inf voxels" in status["nan"]["error"]
    assert "Traceback" not in err
    assert snapshot(scans) == before  # inputs untouched


def test_a_list_with_a_missing_file_and_an_existing_output(
    tmp_path: Path, out_dir: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]
):
    a = write_nifti(tmp_path / "a.nii.gz", smooth_image(seed=1))
    b = write_nifti(tmp_path / "b.nii.gz", smooth_image(seed=2))
    kept = out_dir / "b_enhanced.nii.gz"
    kept.write_bytes(b"last night's result")
    missing = tmp_path / "missing.nii.gz"
    summary = out_dir / "summary.json"

    rc = main(["enhance", str(a), str(missing), str(b), "-o", str(out_dir), "--model",
               str(tiny_weights), "-q", "--summary", str(summary)])  # fmt: skip

    capsys.readouterr()
    assert rc == 1
    assert nib.load(out_dir / "a_enhanced.nii.gz").shape == (12, 14, 10)
    assert kept.read_bytes() == b"last night's result"  # not overwritten without --overwrite
    results = json.loads(summary.read_text())["results"]
    assert [r["status"] for r in results] == ["ok", "failed", "failed"]
    assert "no such file" in results[1]["error"]
    assert "output exists" in results[2]["error"]


def test_an_all_good_batch_exits_0(
    tmp_path: Path, out_dir: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]
):
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(2):
        write_nifti(scans / f"s{i}.nii", smooth_image(seed=i))
    summary = tmp_path / "s.json"

    rc = main(["enhance", str(scans), "-o", str(out_dir), "--model", str(tiny_weights),
               "--summary", str(summary)])  # fmt: skip

    assert rc == 0
    assert json.loads(summary.read_text())["failed"] == 0
    assert "2 succeeded, 0 failed" in capsys.readouterr().out


def test_an_internal_error_in_one_file_does_not_stop_the_batch(
    tmp_path: Path,
    out_dir: Path,
    tiny_weights: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    import mrenhance.enhance_api as api

    real = api.enhance

    def flaky(volume, model, **kw):
        if "s1" in volume.meta["source"]:
            raise RuntimeError("simulated bug")
        return real(volume, model, **kw)

    monkeypatch.setattr(api, "enhance", flaky)
    files = [write_nifti(tmp_path / f"s{i}.nii.gz", smooth_image(seed=i)) for i in range(3)]
    summary = tmp_path / "s.json"

    rc = main(["enhance", *map(str, files), "-o", str(out_dir), "--model", str(tiny_weights),
               "-q", "--summary", str(summary)])  # fmt: skip

    err = capsys.readouterr().err
    assert rc == 1
    assert (out_dir / "s0_enhanced.nii.gz").exists() and (out_dir / "s2_enhanced.nii.gz").exists()
    assert not (out_dir / "s1_enhanced.nii.gz").exists()
    line = next(ln for ln in err.splitlines() if "s1" in ln)
    assert "internal error: RuntimeError: simulated bug" in line
    assert json.loads(summary.read_text())["results"][1]["status"] == "failed"


def test_tampered_weights_stop_a_batch_before_any_file(
    tmp_path: Path, out_dir: Path, capsys: pytest.CaptureFixture[str]
):
    weights = make_tiny_weights(tmp_path)
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    files = [write_nifti(tmp_path / f"s{i}.nii.gz", smooth_image(seed=i)) for i in range(2)]

    rc = main(["enhance", *map(str, files), "-o", str(out_dir), "--model", str(weights), "-q"])

    assert rc == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []


def test_one_input_with_an_output_folder_writes_into_it(
    tmp_path: Path, out_dir: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]
):
    src = write_nifti(tmp_path / "t1.nii.gz", smooth_image())

    rc = main(["enhance", str(src), "-o", str(out_dir), "--model", str(tiny_weights), "-q"])

    assert rc == 0, capsys.readouterr().err
    assert nib.load(out_dir / "t1_enhanced.nii.gz").shape == (12, 14, 10)


def test_a_nan_result_fails_its_entry_and_the_siblings_are_written(
    tmp_path: Path,
    out_dir: Path,
    tiny_weights: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    import mrenhance.enhance_api as api

    real = api.enhance

    def nan_for_s1(volume, model, **kw):
        result = real(volume, model, **kw)
        if "s1" in volume.meta["source"]:
            result.data[2, 3, 4] = np.nan  # what a diverged network would return
        return result

    monkeypatch.setattr(api, "enhance", nan_for_s1)
    files = [write_nifti(tmp_path / f"s{i}.nii.gz", smooth_image(seed=i)) for i in range(3)]
    before = snapshot(tmp_path)
    summary = tmp_path / "s.json"

    rc = main(["enhance", *map(str, files), "-o", str(out_dir), "--model", str(tiny_weights),
               "-q", "--summary", str(summary)])  # fmt: skip

    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "s0_enhanced.json", "s0_enhanced.nii.gz", "s2_enhanced.json", "s2_enhanced.nii.gz"
    ]  # fmt: skip
    [line] = err.splitlines()
    assert line == (
        f"mrenhance: error: {out_dir / 's1_enhanced.nii.gz'}: the result holds 1 NaN/Inf "
        "voxels; not written (check the model and the input's intensity range)"
    )
    entry = json.loads(summary.read_text())["results"][1]
    assert entry["status"] == "failed" and "1 NaN/Inf voxels" in entry["error"]
    after = snapshot(tmp_path)
    assert all(after[k] == v for k, v in before.items() if k.startswith("s"))  # inputs intact
