"""Options every command shares: help with defaults, global flags before or after the
command name, shell completion, ``--device auto`` and ``--threads``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bad_inputs.build import smooth_image, write_nifti
from bad_inputs.hostile import nifti_with_odd_extension
from mrenhance import cli
from mrenhance.cli import build_parser, main

SRC = str(Path(__file__).resolve().parents[1] / "src")
WARNING = "Extension size is not a multiple of 16 bytes"
OFF_BY_DEFAULT = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._CountAction,
    argparse._HelpAction,
    argparse._VersionAction,
)


def _all_parsers() -> list[argparse.ArgumentParser]:
    parser = build_parser()
    return [parser, *cli._subparsers(parser)]


# ---------------------------------------------------------------------------- help texts
def test_every_option_says_its_default():
    missing = []
    for p in _all_parsers():
        for a in p._actions:
            if not a.option_strings or isinstance(a, OFF_BY_DEFAULT) or a.required:
                continue  # positionals, flags that are off, options one must give
            if "default" not in (a.help or "").lower():
                missing.append(f"{p.prog} {'/'.join(a.option_strings)}")
    assert missing == []


def test_every_command_shows_the_global_options():
    for p in _all_parsers()[1:]:
        if any(isinstance(a, argparse._SubParsersAction) for a in p._actions):
            continue  # 'simulate' itself: its simulators take them
        for flag in ("-q", "--log-file", "--debug", "-v"):
            assert flag in p._option_string_actions, f"{p.prog}: {flag}"


def test_train_help_shows_the_budget_and_a_tiny_steps_override(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--budget 30m" in out and "train.steps=20" in out


# ---------------------------------------------------------------------------- global flags
@pytest.fixture
def odd_nifti(tmp_path: Path) -> Path:
    """A NIfTI that nibabel loads with a UserWarning."""
    return nifti_with_odd_extension(tmp_path / "ext.nii")


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_shows_warnings_in_either_position(where, odd_nifti, capsys):
    argv = ["-vv", "info", str(odd_nifti)] if where == "before" else ["info", str(odd_nifti), "-vv"]
    assert main(argv) == 0
    assert WARNING in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_no_info_line_in_either_position(where, tmp_path, capsys):
    src = write_nifti(tmp_path / "t1.nii.gz", smooth_image())
    args = ["simulate", "kspace", str(src), "-o", str(tmp_path / "lr.nii.gz")]
    argv = ["-q", *args] if where == "before" else [*args, "-q"]

    assert main(argv) == 0
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "lr.nii.gz").is_file()


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_still_prints_an_error_in_one_line(where, tmp_path, capsys):
    args = ["info", str(tmp_path / "missing.nii.gz")]
    assert main(["-q", *args] if where == "before" else [*args, "-q"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "missing.nii.gz" in err


def test_quiet_and_verbose_together_are_refused(tmp_path, capsys):
    assert main(["-q", "info", str(tmp_path / "x.nii"), "-v"]) == 2
    assert capsys.readouterr().err.startswith("mrenhance: error: -q and -v")


@pytest.mark.parametrize("where", ["before", "after"])
def test_log_file_holds_warnings_and_errors_in_either_position(where, odd_nifti, tmp_path, capsys):
    log = tmp_path / "run.log"
    for argv in (["info", str(odd_nifti)], ["info", str(tmp_path / "missing.nii")]):
        flags = ["--log-file", str(log)]
        main([*flags, *argv] if where == "before" else [*argv, *flags])
    err = capsys.readouterr().err
    text = log.read_text()

    assert WARNING in text and WARNING not in err  # the terminal stays as without the file
    assert "missing.nii: no such file" in text  # the error line, time-stamped
    assert text.count("INFO mrenhance: mrenhance ") == 2  # each command line


def test_a_log_file_that_is_an_input_is_refused_and_the_input_kept(odd_nifti, capsys):
    before = odd_nifti.read_bytes()
    assert main(["info", str(odd_nifti), "--log-file", str(odd_nifti)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mrenhance: error: ") and "log file is the input" in err
    assert odd_nifti.read_bytes() == before


def test_a_log_file_inside_an_input_series_folder_is_refused(tmp_path, capsys):
    series = tmp_path / "series"
    series.mkdir()
    log = series / "log.txt"
    assert main(["--log-file", str(log), "info", str(series)]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert not log.exists()


class _Boom:
    """A command whose run is a bug."""

    NAME = "boom"

    @staticmethod
    def add_parser(sub):
        return sub.add_parser("boom", help="raises")

    @staticmethod
    def run(args):
        raise RuntimeError("a bug")


@pytest.mark.parametrize("where", ["before", "after", "none"])
def test_debug_shows_the_traceback_in_either_position(where, monkeypatch, capsys):
    monkeypatch.setitem(cli._REGISTERED, "boom", _Boom)
    monkeypatch.delenv("MRENHANCE_DEBUG", raising=False)
    argv = {"before": ["--debug", "boom"], "after": ["boom", "--debug"], "none": ["boom"]}[where]

    assert main(argv) == 1
    err = capsys.readouterr().err
    if where == "none":
        assert err.splitlines() == [
            "mrenhance: internal error: RuntimeError: a bug (run with --debug for the "
            "traceback and please report it)"
        ]
    else:
        assert "Traceback (most recent call last)" in err and "RuntimeError: a bug" in err


def test_the_log_file_holds_an_internal_error_traceback(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(cli._REGISTERED, "boom", _Boom)
    log = tmp_path / "log.txt"
    assert main(["boom", "--log-file", str(log)]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert "Traceback" in log.read_text()


# ---------------------------------------------------------------------------- completion
def test_completion_bash_prints_a_script_naming_the_commands(capsys):
    pytest.importorskip("argcomplete")
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete" in script and "mrenhance" in script
    for name in ("enhance", "train", "evaluate", "models", "info"):
        assert name in script.splitlines()[0]


def _complete(line: str, tmp_path: Path) -> list[str]:
    """What the shell gets for ``line`` (argcomplete's protocol, in a fresh process)."""
    out = tmp_path / "completions.txt"
    env = {
        **os.environ,
        "PYTHONPATH": SRC,
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
    }
    subprocess.run([sys.executable, "-m", "mrenhance"], env=env, timeout=120, check=False)
    return out.read_text().split("\013")


@pytest.mark.parametrize(
    ("line", "expected"),
    [("mrenhance enh", "enhance"), ("mrenhance enhance x --model mdcsrn-b4", "mdcsrn-b4u4")],
)
def test_the_shell_completes_commands_and_model_names(line, expected, tmp_path):
    pytest.importorskip("argcomplete")
    assert expected in [c.strip() for c in _complete(line, tmp_path)]


# ---------------------------------------------------------------------------- device, threads
@pytest.mark.parametrize(
    "argv",
    [
        ["enhance", "in.nii", "-o", "out.nii", "--model", "m"],
        ["evaluate", "sr_t1"],
        ["train", "sr_mdcsrn"],
    ],
)
def test_device_defaults_to_auto(argv):
    assert build_parser().parse_args(argv).device == "auto"


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_picks_cuda_then_mps_then_cpu(cuda, mps, expected, monkeypatch):
    import torch

    from mrenhance.options import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert check_device("auto") == expected


def test_threads_sets_torch_threads(tmp_path, monkeypatch, capsys):
    import torch

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(("intra", n)))
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: calls.append(("inter", n)))
    ref = write_nifti(tmp_path / "ref.nii.gz", smooth_image((16, 16, 16)))

    argv = ["evaluate", "--prediction", str(ref), "--reference", str(ref), "--threads", "3"]
    assert main(argv) == 0
    assert calls == [("intra", 3), ("inter", 3)]


@pytest.mark.parametrize("command", ["enhance", "evaluate", "train"])
@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_threads_below_one_is_a_one_line_refusal(command, value, capsys):
    argv = {
        "enhance": ["enhance", "in.nii", "-o", "out.nii", "--model", "m"],
        "evaluate": ["evaluate", "sr_t1"],
        "train": ["train", "sr_mdcsrn"],
    }[command]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--threads", value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("mrenhance: error: argument --threads") and len(err.splitlines()) == 1
