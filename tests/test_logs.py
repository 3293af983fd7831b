"""Library warnings never reach the terminal as stray lines (mrenhance.logs): the CLI logs
them to the ``mrenhance`` logger, shown with ``-v``; the Python API keeps them as warnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from bad_inputs.hostile import nifti_with_odd_extension
from mrenhance.cli import main


def test_a_nibabel_warning_is_hidden_by_default_and_shown_with_verbose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    p = nifti_with_odd_extension(tmp_path / "ext.nii")

    quiet = main(["info", str(p)])
    quiet_err = capsys.readouterr().err
    verbose = main(["info", str(p), "-v"])
    verbose_err = capsys.readouterr().err
    top_level = main(["-v", "info", str(p)])
    top_err = capsys.readouterr().err

    assert (quiet, verbose, top_level) == (0, 0, 0)
    assert quiet_err == ""
    assert verbose_err.splitlines() == [
        "mrenhance: warning: UserWarning: Extension size is not a multiple of 16 bytes; "
        "Assuming size is correct and hoping for the best (nifti1.py:769)"
    ]
    assert top_err == verbose_err


def test_the_api_keeps_python_warnings(tmp_path: Path):
    import mrenhance

    p = nifti_with_odd_extension(tmp_path / "ext.nii")
    with pytest.warns(UserWarning, match="Extension size"):
        mrenhance.load(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["info", str(p)]) == 0  # the CLI routed it: no error raised


def test_our_own_log_warnings_follow_the_same_rule(capsys: pytest.CaptureFixture[str]):
    import logging

    from mrenhance.logs import cli_logging

    with cli_logging(0):
        logging.getLogger("mrenhance.train").warning("hidden")
    with cli_logging(1):
        logging.getLogger("mrenhance.train").warning("shown\nin one line")
    assert capsys.readouterr().err == "mrenhance: warning: shown in one line\n"


def test_a_warning_about_the_users_data_is_shown_without_verbose(capsys):
    import logging

    from mrenhance.logs import cli_logging, warn_user

    with cli_logging(0):
        warn_user("t1.nii.gz: voxel size 1x1x3 mm differs")
        logging.getLogger("mrenhance.train").warning("a library remark stays hidden")
    assert capsys.readouterr().err == "mrenhance: warning: t1.nii.gz: voxel size 1x1x3 mm differs\n"
