"""Path safety: an output never resolves to an input (mrenhance.io.paths)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mrenhance.errors import InputError
from mrenhance.io import paths


@pytest.fixture
def inp(tmp_path: Path) -> Path:
    p = tmp_path / "t1.nii.gz"
    p.write_bytes(b"input bytes")
    return p


def test_spellings_of_one_file_are_the_same_path(tmp_path, inp):
    (tmp_path / "sub").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "link.nii.gz").symlink_to(inp)
    os.link(inp, tmp_path / "hard.nii.gz")
    for spelling in ("sub/../t1.nii.gz", "alias/t1.nii.gz", "link.nii.gz", "hard.nii.gz"):
        assert paths.same_path(tmp_path / spelling, inp), spelling
    assert not paths.same_path(tmp_path / "t2.nii.gz", inp)


def test_a_dangling_symlink_counts_as_its_target(tmp_path):
    (tmp_path / "out.nii.gz").symlink_to(tmp_path / "later.nii.gz")
    assert paths.same_path(tmp_path / "out.nii.gz", tmp_path / "later.nii.gz")


def test_case_variants_match_only_where_the_file_system_folds_case(tmp_path, inp, monkeypatch):
    upper = tmp_path / "T1.nii.gz"
    assert not paths.folds_case(tmp_path)  # Linux tmp: case-sensitive
    assert not paths.same_path(upper, inp)
    monkeypatch.setattr(paths, "folds_case", lambda folder: True)
    assert paths.same_path(upper, inp)
    with pytest.raises(InputError, match="output is the input"):
        paths.check_not_input(upper, [inp])


def test_two_outputs_differing_in_case_collide_where_case_folds(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    pairs = [(tmp_path / "a/T1.nii.gz", out / "T1_enhanced.nii.gz"),
             (tmp_path / "b/t1.nii.gz", out / "t1_enhanced.nii.gz")]  # fmt: skip
    paths.check_batch_outputs(pairs)  # distinct names on a case-sensitive file system
    monkeypatch.setattr(paths, "folds_case", lambda folder: True)
    with pytest.raises(InputError) as exc:
        paths.check_batch_outputs(pairs)
    assert f"inputs {tmp_path / 'a/T1.nii.gz'} and {tmp_path / 'b/t1.nii.gz'}" in str(exc.value)


def test_an_output_inside_an_input_folder_is_refused(tmp_path):
    series = tmp_path / "series"
    (series / "deeper").mkdir(parents=True)
    with pytest.raises(InputError, match="inside the input folder"):
        paths.check_not_input(series / "deeper" / "x.nii.gz", [series])
    paths.check_not_input(tmp_path / "x.nii.gz", [series])


def test_a_run_folder_may_not_hold_or_be_an_input(tmp_path, inp):
    with pytest.raises(InputError, match="holds the input"):
        paths.check_run_folder(tmp_path, [inp])
    with pytest.raises(InputError, match="holds the input"):
        paths.check_run_folder(inp, [inp])
    paths.check_run_folder(tmp_path / "runs" / "x", [inp])  # not created, nothing inside


def test_plan_names_outputs_and_checks_them_before_any_read(tmp_path):
    scans, out = tmp_path / "scans", tmp_path / "out"
    scans.mkdir()
    out.mkdir()
    for name in ("a.nii.gz", "b.nii"):
        (scans / name).write_bytes(b"x")
    assert paths.plan_enhance_outputs([str(scans)], out) == [
        (scans / "a.nii.gz", out / "a_enhanced.nii.gz"),
        (scans / "b.nii", out / "b_enhanced.nii.gz"),
    ]
    assert paths.plan_enhance_outputs([str(scans / "a.nii.gz")], out / "x.nii.gz") == [
        (scans / "a.nii.gz", out / "x.nii.gz")
    ]
