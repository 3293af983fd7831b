"""The command line: happy paths and one-line errors with exit code 2."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mrenhance import Volume
from mrenhance.cli import main
from mrenhance.io import load, save
from mrenhance.models import create_model
from mrenhance.models.weights import save_weights


@pytest.fixture
def t1_file(tmp_path, small_brain, oblique_affine):
    path = tmp_path / "t1.nii.gz"
    save(Volume(small_brain * 200, oblique_affine), path)
    return path


@pytest.fixture
def tiny_weights(tmp_path):
    model = create_model("mdcsrn-b2u4", growth=4)
    card = {"task": "sr_t1", "inference": {"patch_size": 16, "overlap": 4, "blend": "crop"}}
    return save_weights(model, tmp_path / "tiny.safetensors", card)


def enhance_cli(src, out, weights, *options: str) -> int:
    """``mrenhance enhance SRC -o OUT --model WEIGHTS -q [options]``; returns the exit code."""
    return main(["enhance", str(src), "-o", str(out), "--model", str(weights), "-q", *options])


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "mrenhance 0.1.0" in capsys.readouterr().out


def test_info_reports_shape_voxel_size_orientation(t1_file, capsys):
    assert main(["info", str(t1_file)]) == 0
    out = capsys.readouterr().out
    assert "(24, 28, 20)" in out
    assert "(0.9, 1.1, 2.5) mm" in out
    assert "orientation" in out


def test_missing_file_is_one_line_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.nii.gz" in err and "Traceback" not in err


def test_enhance_keeps_grid_and_header(t1_file, tiny_weights, tmp_path, capsys):
    out = tmp_path / "sr.nii.gz"
    code = enhance_cli(t1_file, out, tiny_weights)
    assert code == 0
    src, res = load(t1_file), load(out)
    assert res.shape == src.shape
    np.testing.assert_allclose(res.affine, src.affine, atol=1e-5)
    img = nib.load(str(out))
    assert int(img.header["sform_code"]) == int(nib.load(str(t1_file)).header["sform_code"])
    assert "enhance model=tiny" in img.header["descrip"].tobytes().decode(errors="ignore")


def test_enhance_refuses_existing_output_without_overwrite(t1_file, tiny_weights, tmp_path):
    out = tmp_path / "sr.nii.gz"
    out.write_bytes(b"keep me")
    code = enhance_cli(t1_file, out, tiny_weights)
    assert code == 2
    assert out.read_bytes() == b"keep me"


def test_enhance_unknown_model_lists_available(t1_file, tmp_path, capsys):
    code = main(["enhance", str(t1_file), "-o", str(tmp_path / "o.nii.gz"), "--model", "nope"])
    assert code == 2
    assert "no shipped weights" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()


def test_simulate_kspace_writes_degraded_image(t1_file, tmp_path):
    out = tmp_path / "lr.nii.gz"
    assert main(["simulate", "kspace", str(t1_file), "-o", str(out), "--factors", "2,2,1"]) == 0
    lr, hr = load(out), load(t1_file)
    assert lr.shape == hr.shape
    assert not np.allclose(lr.data, hr.data)
    descrip = nib.load(str(out)).header["descrip"].tobytes().decode(errors="ignore")
    assert "simulate kspace" in descrip


def _markdown_rows(text: str) -> list[dict[str, str]]:
    """The rows of the one Markdown table in ``text``, as {column: cell}."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in ln.strip("|").split("|")), strict=True))
        for ln in lines[2:]
    ]


def test_evaluate_two_files_prints_each_metric(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ref = (rng.random((16, 16, 16)) + 1).astype(np.float32)
    save(Volume(ref, np.eye(4)), tmp_path / "ref.nii.gz")
    save(Volume(ref + 0.1, np.eye(4)), tmp_path / "pred.nii.gz")
    argv = ["evaluate", "--prediction", str(tmp_path / "pred.nii.gz"), "--reference"]

    assert main([*argv, str(tmp_path / "ref.nii.gz"), "--data-range", "1"]) == 0
    [offset] = _markdown_rows(capsys.readouterr().out)
    assert main([*argv, str(tmp_path / "pred.nii.gz")]) == 0
    [same] = _markdown_rows(capsys.readouterr().out)

    assert list(offset) == ["prediction", "psnr", "ssim", "nrmse", "mae"]
    assert offset["prediction"] == str(tmp_path / "pred.nii.gz")
    assert float(offset["psnr"]) == pytest.approx(20.0, abs=0.01)  # 10 log10(1 / 0.1^2)
    assert float(offset["mae"]) == pytest.approx(0.1, abs=1e-4)
    assert 0.99 < float(offset["ssim"]) < 1
    assert float(offset["nrmse"]) == pytest.approx(0.1 / np.sqrt(np.mean(ref**2)), rel=0.02)
    # a column's numbers share their decimals (0.9906 beside 1.000, never beside 1)
    assert (same["psnr"], same["ssim"], same["nrmse"], same["mae"]) == ("inf", "1.000", "0", "0")


def test_batch_enhance_writes_good_files_and_reports_failures(tiny_weights, tmp_path, small_brain):
    src = tmp_path / "in"
    dst = tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    save(Volume(small_brain), src / "a.nii.gz")
    (src / "b.nii.gz").write_bytes(b"not a nifti at all")
    summary = tmp_path / "summary.json"
    code = enhance_cli(src, dst, tiny_weights, "--summary", str(summary))
    assert code == 1
    assert (dst / "a_enhanced.nii.gz").exists() and not (dst / "b_enhanced.nii.gz").exists()
    report = json.loads(summary.read_text())
    assert report["failed"] == 1
    assert {r["status"] for r in report["results"]} == {"ok", "failed"}


def test_models_lists_registered_networks(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mdcsrn-b4u4" in out and "412,033" in out and "fsrcnn3d" in out


def test_train_with_bad_recipe_key_exits_2(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ntask: sr_t1\nmodel: {name: mdcsrn-b2u4}\ntrain: {stepz: 3}\n")
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run")]) == 2
    assert "stepz" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_evaluate_task_table_with_own_weights(tmp_path, capsys):
    model = create_model("mdcsrn-b2u4", growth=2, units=2)
    card = {"task": "sr_t1", "inference": {"patch_size": 64, "overlap": 4, "blend": "crop"}}
    tiny_weights = save_weights(model, tmp_path / "tiny.safetensors", card)
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "sr_t1",
            "--models",
            "tricubic,tiny",
            "--weights",
            str(tiny_weights),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    rows = json.loads((out / "evaluation.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    by = {r["method"]: r for r in rows}
    assert set(by) == {"tricubic", "tiny"}
    assert by["tiny"]["parameters"] > 0 and by["tiny"]["seconds"] > 0
    assert 20 < by["tricubic"]["psnr"] < 45
    assert (out / "evaluation.md").exists() and (out / "evaluation.csv").exists()


def test_enhance_volume_smaller_than_one_patch(t1_file, tiny_weights, tmp_path):
    out = tmp_path / "sr.nii.gz"
    code = enhance_cli(t1_file, out, tiny_weights, "--patch-size", "64", "--overlap", "6")
    assert code == 0
    assert load(out).shape == load(t1_file).shape == (24, 28, 20)


def test_enhance_upsample_doubles_the_grid(t1_file, tiny_weights, tmp_path):
    out = tmp_path / "sr.nii.gz"
    code = enhance_cli(t1_file, out, tiny_weights, "--upsample", "2,2,1")
    assert code == 0
    res = load(out)
    assert res.shape == (48, 56, 20)
    np.testing.assert_allclose(res.voxel_size, (0.45, 0.55, 2.5), atol=1e-4)


def test_enhance_dicom_series_folder_to_nifti(tiny_weights, tmp_path, small_brain, oblique_affine):
    from dicom_factory import write_series

    series = tmp_path / "series"
    series.mkdir()
    write_series(series, np.round(small_brain * 1000), oblique_affine)
    out = tmp_path / "sr.nii.gz"
    code = enhance_cli(series, out, tiny_weights)
    assert code == 0
    src, res = load(series), load(out)
    assert res.shape == src.shape == small_brain.shape
    np.testing.assert_allclose(res.affine, src.affine, atol=1e-4)
    np.testing.assert_allclose(res.affine, oblique_affine, atol=1e-3)


@pytest.mark.parametrize(
    "option",
    [
        ["--patch-size", "0"],
        ["--patch-size", "100000"],
        ["--overlap", "-1"],
        ["--patch-size", "16", "--overlap", "16"],
        ["--batch-size", "0"],
    ],
)
def test_enhance_refuses_absurd_tiling_before_work(t1_file, tiny_weights, tmp_path, capsys, option):
    out = tmp_path / "sr.nii.gz"
    code = enhance_cli(t1_file, out, tiny_weights, *option)
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option[-2] in err
    assert not out.exists()


def test_enhance_api_refuses_absurd_patch(small_brain, tiny_weights):
    from mrenhance import enhance
    from mrenhance.errors import InputError

    with pytest.raises(InputError, match="patch-size"):
        enhance(Volume(small_brain), str(tiny_weights), patch_size=(16, 0, 16))


# ---------------------------------------------------------------------------- the parser


def test_argparse_errors_are_one_line_without_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["enhance", "t1.nii.gz"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == "mrenhance: error: the following arguments are required: -o/--output, --model\n"


def test_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["enhanse"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mrenhance: error: argument COMMAND: invalid")


def test_help_is_still_full(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["enhance", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mrenhance enhance") and "--patch-size" in out
    assert "examples:" in out


def test_every_builtin_command_is_registered():
    from mrenhance.cli import commands

    names = list(commands())
    builtins = ["info", "models", "enhance", "simulate", "train", "ship", "evaluate", "demo"]
    # the built-in commands, in --help order; tasks' own commands come in between by ORDER
    assert [n for n in names if n in builtins] == builtins


def test_a_task_adds_its_own_command_through_cli_commands(monkeypatch, capsys, tmp_path):
    """A task lists command modules in ``cli_commands``; no central list is edited."""
    import sys
    import types

    from mrenhance.tasks import Task, base

    command = types.ModuleType("fake_perfusion_cli")
    command.NAME = "fake-perfusion"  # the real dsc task registers "perfusion" this way
    command.add_parser = lambda sub: sub.add_parser("fake-perfusion", help="CBV maps")
    command.run = lambda args: print("perfusion ran") or 0

    class FakeDSC(Task):
        name = "fake_dsc"
        cli_commands = ("fake_perfusion_cli",)

    monkeypatch.setitem(sys.modules, "fake_perfusion_cli", command)
    monkeypatch.setitem(base._TASKS, "fake_dsc", FakeDSC())

    assert main(["fake-perfusion"]) == 0
    assert capsys.readouterr().out == "perfusion ran\n"


def test_register_command_refuses_an_object_without_run():
    from mrenhance.cli import register_command

    with pytest.raises(TypeError, match="add_parser"):
        register_command(object(), "nothing")


# ---------------------------------------------------------------------------- simulate


def test_simulate_noise_without_snr_is_refused(t1_file, tmp_path, capsys):
    out = tmp_path / "noisy.nii.gz"
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "noise", str(t1_file), "-o", str(out)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "mrenhance: error: the following arguments are required: --snr\n"
    )
    assert not out.exists()


def test_simulate_noise_adds_rician_noise_at_the_snr(t1_file, tmp_path):
    out = tmp_path / "noisy.nii.gz"
    assert main(["simulate", "noise", str(t1_file), "-o", str(out), "--snr", "5"]) == 0
    clean, noisy = load(t1_file).data, load(out).data
    assert not np.allclose(clean, noisy)
    descrip = nib.load(str(out)).header["descrip"].tobytes().decode(errors="ignore")
    assert "simulate noise rician snr=5.0" in descrip


def test_simulators_are_registered_by_name():
    from mrenhance.errors import InputError
    from mrenhance.simulate.registry import SIMULATORS, get_simulator

    assert {"kspace", "thick-slice", "noise"} <= set(SIMULATORS)
    assert get_simulator("noise").snr == "required"
    with pytest.raises(InputError, match="unknown simulator 'asl'"):
        get_simulator("asl")


def test_simulate_kspace_with_snr_adds_noise_after_truncation(t1_file, tmp_path, capsys):
    plain, noisy = tmp_path / "lr.nii.gz", tmp_path / "lr_noisy.nii.gz"
    assert main(["simulate", "kspace", str(t1_file), "-o", str(plain)]) == 0
    assert main(["simulate", "kspace", str(t1_file), "-o", str(noisy), "--snr", "10"]) == 0
    assert not np.allclose(load(plain).data, load(noisy).data)
    last = capsys.readouterr().out.splitlines()[-1]  # the NIfTI descrip keeps 80 bytes only
    assert last.endswith(
        "simulate kspace factors=(2.0, 2.0, 1.0) taper=None rician snr=10.0 seed=0"
    )
