"""Atomic writes: all or nothing, never a partial file, overwrite only when asked."""

from __future__ import annotations

import os
import stat

import pytest

from mrenhance.errors import InputError, OutputExistsError
from mrenhance.io.atomic import (
    atomic_path,
    check_output_path,
    write_bytes_atomic,
    write_text_atomic,
)


class Boom(RuntimeError):
    pass


def test_exception_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the data")
        raise Boom
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_exception_keeps_the_old_file_when_overwriting(tmp_path):
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")
    with pytest.raises(Boom), atomic_path(target, overwrite=True) as tmp:
        tmp.write_bytes(b"new but broken")
        raise Boom
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_success_renames_and_keeps_suffixes(tmp_path):
    target = tmp_path / "sub.ject.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.endswith(".nii.gz") and tmp != target
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["sub.ject.nii.gz"]


def test_existing_file_is_refused_before_any_work(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"keep me")
    ran = []
    with pytest.raises(OutputExistsError, match=r"use --overwrite"):
        with atomic_path(target):
            ran.append(True)
    assert ran == []
    assert target.read_bytes() == b"keep me"


def test_overwrite_replaces(tmp_path):
    target = write_bytes_atomic(tmp_path / "a.bin", b"one")
    write_bytes_atomic(target, b"two", overwrite=True)
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_file_appearing_while_writing_is_not_replaced(tmp_path):
    target = tmp_path / "race.txt"
    with pytest.raises(OutputExistsError), atomic_path(target) as tmp:
        tmp.write_bytes(b"mine")
        target.write_bytes(b"someone else's")
    assert target.read_bytes() == b"someone else's"
    assert os.listdir(tmp_path) == ["race.txt"]


def test_result_has_umask_permissions_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "report.html", "<p>hi</p>")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "<p>hi</p>"


def test_unusable_output_paths_are_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "a.nii")
    with pytest.raises(InputError, match="is a directory"):
        check_output_path(tmp_path)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_output_path(afile / "a.nii")
    with pytest.raises(InputError):
        write_bytes_atomic(tmp_path / "missing" / "a.bin", b"x")
    assert sorted(os.listdir(tmp_path)) == ["file"]
