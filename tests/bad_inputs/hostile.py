"""Bad inputs of the second hostile-user round (issue 9), one function per case.

Classes: files that are not regular files (FIFO, socket, device), file names the file system
cannot hold or that are not UTF-8, options that cannot work (device, patch axes, argparse),
recipes with impossible values or built to exhaust the loader (alias bomb, deep nesting,
huge scalars), model cards with wrong types or values, DICOM series whose files disagree,
and batches where one such entry fails alone. Registered in :data:`bad_inputs.build.CASES`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from bad_inputs.build import (
    Case,
    _enhance_case,
    _good_input_case,
    _nii,
    _recipe_case,
    _series,
    _weights,
    _weights_case,
    api_enhance,
    case,
    smooth_image,
    tiny_recipe,
    write_nifti,
)

LONG = "n" * 300  # over NAME_MAX (255 bytes) of every common file system


def _info(inp: Path, expect: str, names: Path | str | None = None) -> Case:
    """``mrenhance info <inp>``; the API is ``mrenhance.load``."""
    import mrenhance

    return Case(
        name="",
        argv=["info", str(inp)],
        inputs=[inp] if os.path.lexists(inp) else [],
        expect=expect,
        names=str(inp if names is None else names),
        api=lambda: mrenhance.load(inp),
    )


# --------------------------------------------------------------------------- special files


@case
def case_fifo_input(folder: Path) -> Case:
    """A named pipe called ``.nii.gz``: reading it would wait for a writer for ever."""
    fifo = folder / "scan.nii.gz"
    os.mkfifo(fifo)
    return _enhance_case(folder, fifo, "is a FIFO (named pipe), not a regular file")


@case
def case_fifo_info(folder: Path) -> Case:
    fifo = folder / "scan.nii"
    os.mkfifo(fifo)
    return _info(fifo, "is a FIFO (named pipe), not a regular file")


@case
def case_socket_input(folder: Path) -> Case:
    path = folder / "scan.nii"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays
    return _info(path, "is a socket, not a regular file")


@case
def case_character_device_input(folder: Path) -> Case:
    """A symlink to /dev/zero: an endless stream of zeros, never read."""
    link = folder / "zeros.nii.gz"
    link.symlink_to("/dev/zero")
    return _enhance_case(folder, link, "is a character device, not a regular file")


@case
def case_fifo_recipe(folder: Path) -> Case:
    c = _recipe_case(folder, tiny_recipe(folder / "blob.nii.gz"), "not a regular file")
    recipe = Path(c.argv[1])
    recipe.unlink()
    os.mkfifo(recipe)
    return c


@case
def case_fifo_weights(folder: Path) -> Case:
    wdir = folder / "weights"
    wdir.mkdir()
    fifo = wdir / "pipe.safetensors"
    os.mkfifo(fifo)
    c = _weights_case(folder, fifo, "not a regular file", fifo)
    c.inputs = [p for p in c.inputs if p != fifo]
    return c


@case
def case_fifo_model_card(folder: Path) -> Case:
    weights = _weights(folder)
    card = weights.with_suffix(".json")
    card.unlink()
    os.mkfifo(card)
    c = _weights_case(folder, weights, "not a regular file", card)
    c.inputs = [weights]
    return c


@case
def case_batch_with_fifo(folder: Path) -> Case:
    """A folder of NIfTIs holding a FIFO among good files: only that entry fails."""
    scans = folder / "scans"
    scans.mkdir()
    _nii(scans, "a.nii.gz")
    _nii(scans, "c.nii.gz")
    os.mkfifo(scans / "b.nii.gz")
    return _batch_case(folder, scans, scans / "b.nii.gz", "is a FIFO", ["a", "c"])


def _batch_case(
    folder: Path, scans: Path, bad: Path, expect: str, good_stems: list[str], *, out=None
) -> Case:
    """``mrenhance enhance <scans>/ -o <folder>/out/ --summary ...``: ``bad`` fails alone."""
    from mrenhance.io import load

    weights = _weights(folder)
    out = out or folder / "out"
    out.mkdir(exist_ok=True)
    summary = out / "summary.json"
    return Case(
        name="",
        argv=[
            "enhance",
            str(scans),
            "-o",
            str(out),
            "--model",
            str(weights),
            "-q",
            "--summary",
            str(summary),
        ],
        inputs=[scans, weights],
        expect=expect,
        names=str(bad),
        api=lambda: load(bad),
        rc=1,
        written=[out / f"{stem}_enhanced.nii.gz" for stem in good_stems],
        summary=summary,
    )


# --------------------------------------------------------------------------- file names


@case
def case_input_name_too_long(folder: Path) -> Case:
    return _enhance_case(folder, folder / f"{LONG}.nii.gz", "file name too long")


@case
def case_input_folder_name_too_long(folder: Path) -> Case:
    return _info(folder / LONG / "t1.nii.gz", "file name too long")


@case
def case_output_name_too_long(folder: Path) -> Case:
    out = folder / f"{LONG}.nii.gz"
    return _good_input_case(folder, out, "file name too long", out)


@case
def case_output_name_leaves_no_room_for_temp(folder: Path) -> Case:
    """250 bytes fit the file system, but not our temp name beside it."""
    out = folder / ("t" * 243 + ".nii.gz")
    return _good_input_case(folder, out, "with room for the temp name", out)


@case
def case_summary_name_too_long(folder: Path) -> Case:
    from mrenhance.io.atomic import check_output_path

    summary = folder / f"{LONG}.json"
    c = _good_input_case(folder, folder / "out.nii.gz", "file name too long", summary)
    c.argv += ["--summary", str(summary)]
    c.api = lambda: check_output_path(summary, overwrite=True)
    return c


@case
def case_model_name_too_long(folder: Path) -> Case:
    weights = folder / f"{LONG}.safetensors"
    c = _weights_case(folder, weights, "file name too long", weights)
    return c


@case
def case_recipe_name_too_long(folder: Path) -> Case:
    c = _recipe_case(folder, tiny_recipe(folder / "blob.nii.gz"), "file name too long")
    long_recipe = folder / f"{LONG}.yaml"
    c.argv[1] = str(long_recipe)
    c.inputs = c.inputs[1:]
    (folder / "bad.yaml").unlink()
    c.names = str(long_recipe)
    from mrenhance.training import train_recipe

    c.api = lambda: train_recipe(long_recipe, run_dir=folder / "run", progress=False)
    return c


@case
def case_run_dir_name_too_long(folder: Path) -> Case:
    from mrenhance.io.paths import check_run_folder

    c = _recipe_case(folder, tiny_recipe(folder / "blob.nii.gz"), "file name too long")
    run = folder / LONG
    c.argv[c.argv.index("--run-dir") + 1] = str(run)
    c.names = str(run)
    c.api = lambda: check_run_folder(run, [])
    return c


@case
def case_non_utf8_name_truncated(folder: Path) -> Case:
    """A broken file whose name is not UTF-8: the line shows the byte as ``\\xe9``."""
    name = os.fsdecode(b"caf\xe9.nii.gz")
    p = write_nifti(folder / name, smooth_image((16, 16, 16)))
    p.write_bytes(p.read_bytes()[:200])
    return _enhance_case(folder, p, "truncated")


@case
def case_batch_non_utf8_sibling_and_bad_entry(folder: Path) -> Case:
    """A non-UTF-8 name is processed (its provenance written safely); the bad entry fails."""
    import nibabel as nib

    scans = folder / "scans"
    scans.mkdir()
    name = os.fsdecode(b"caf\xe9.nii.gz")
    _nii(scans, name)
    bad = scans / "z_cut.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    c = _batch_case(folder, scans, bad, "corrupt gzip stream", [os.fsdecode(b"caf\xe9")])

    def descrip_is_utf8() -> None:
        text = bytes(nib.load(c.written[0]).header["descrip"]).rstrip(b"\0")
        assert b"caf\\xe9" in text, text  # the byte spelled out, valid UTF-8

    c.check = descrip_is_utf8
    return c


@case
def case_batch_output_name_too_long(folder: Path) -> Case:
    """An input name that fits, whose ``_enhanced`` output does not: that entry fails."""
    scans = folder / "scans"
    scans.mkdir()
    _nii(scans, "a.nii.gz")
    long_in = _nii(scans, "l" * 240 + ".nii.gz")
    out = folder / "out"
    c = _batch_case(folder, scans, long_in, "file name too long", ["a"], out=out)
    bad_out = out / ("l" * 240 + "_enhanced.nii.gz")
    c.names = str(bad_out)
    from mrenhance.io.atomic import check_output_path

    c.api = lambda: check_output_path(bad_out)
    return c


# --------------------------------------------------------------------------- options


def _option_case(folder: Path, extra: list[str], expect: str, names: str, **api_kw: Any) -> Case:
    """``mrenhance enhance good.nii.gz -o out.nii.gz --model tiny <extra>``; the API is
    :class:`mrenhance.enhance_api.Enhancer` with the same options."""
    from mrenhance.enhance_api import Enhancer

    c = _good_input_case(folder, folder / "out.nii.gz", expect, names)
    c.argv += extra
    weights = Path(c.argv[c.argv.index("--model") + 1])
    c.api = lambda: Enhancer.from_weights(weights, **api_kw)
    return c


@case
def case_device_banana(folder: Path) -> Case:
    return _option_case(
        folder, ["--device", "banana"], "not a device", "--device 'banana'", device="banana"
    )


@case
def case_device_empty(folder: Path) -> Case:
    return _option_case(folder, ["--device", ""], "not a device", "--device ''", device="")


@case
def case_device_cuda_missing(folder: Path) -> Case:
    """``cuda`` without CUDA; on a GPU machine ``cuda:999`` (an index it lacks)."""
    import torch

    dev = "cuda:999" if torch.cuda.is_available() else "cuda"
    expect = "no such GPU" if torch.cuda.is_available() else "CUDA is not available"
    return _option_case(folder, ["--device", dev], expect, f"--device {dev!r}", device=dev)


@case
def case_device_cuda_index_out_of_range(folder: Path) -> Case:
    return _option_case(
        folder, ["--device", "cuda:63"], "cuda:63", "--device 'cuda:63'", device="cuda:63"
    )


@case
def case_device_unsupported_type(folder: Path) -> Case:
    return _option_case(
        folder, ["--device", "meta"], "is not supported", "--device 'meta'", device="meta"
    )


@case
def case_patch_size_two_axes_for_3d_model(folder: Path) -> Case:
    return _option_case(
        folder,
        ["--patch-size", "16,16"],
        "is a 3D network",
        "--patch-size 16,16",
        inference={"patch_size": (16, 16)},
    )


@case
def case_patch_size_four_axes(folder: Path) -> Case:
    return _option_case(
        folder,
        ["--patch-size", "16,16,16,16"],
        "is a 3D network",
        "--patch-size 16,16,16,16",
        inference={"patch_size": (16, 16, 16, 16)},
    )


def _argparse_case(folder: Path, argv: list[str], expect: str, names: str) -> Case:
    inp = _nii(folder, "good.nii.gz")
    return Case(
        name="",
        argv=[a.replace("{inp}", str(inp)) for a in argv],
        inputs=[inp],
        expect=expect,
        names=names,
        api=None,
    )


@case
def case_argparse_unknown_option(folder: Path) -> Case:
    return _argparse_case(
        folder, ["info", "{inp}", "--frobnicate"], "unrecognized arguments", "--frobnicate"
    )


@case
def case_argparse_not_an_int(folder: Path) -> Case:
    return _argparse_case(
        folder,
        ["enhance", "{inp}", "-o", "x.nii.gz", "--model", "m", "--batch-size", "two"],
        "invalid int value",
        "'two'",
    )


@case
def case_argparse_unknown_command(folder: Path) -> Case:
    return _argparse_case(folder, ["enhanse", "{inp}"], "invalid choice", "'enhanse'")


@case
def case_train_device_banana(folder: Path) -> Case:
    from mrenhance.training import train_recipe

    c = _recipe_case(folder, tiny_recipe(folder / "blob.nii.gz"), "not a device")
    c.argv += ["--device", "banana"]
    c.names = "--device 'banana'"
    path, run = Path(c.argv[1]), folder / "run"
    c.api = lambda: train_recipe(path, run_dir=run, device="banana", progress=False)
    return c


# --------------------------------------------------------------------------- recipes


def _train_value(folder: Path, expect: str, **train: Any) -> Case:
    return _recipe_case(folder, tiny_recipe(folder / "blob.nii.gz", **train), expect)


@case
def case_recipe_steps_zero(folder: Path) -> Case:
    return _train_value(folder, "train.steps: must be > 0", steps=0)


@case
def case_recipe_steps_negative(folder: Path) -> Case:
    return _train_value(folder, "train.steps: must be > 0", steps=-5)


@case
def case_recipe_lr_nan(folder: Path) -> Case:
    return _recipe_case(
        folder,
        tiny_recipe(folder / "blob.nii.gz"),
        "train.lr: must be a finite",
        ("train.lr=.nan",),
    )


@case
def case_recipe_lr_negative(folder: Path) -> Case:
    return _train_value(folder, "train.lr: must be a finite number > 0", lr=-1e-4)


@case
def case_recipe_lr_infinite(folder: Path) -> Case:
    return _recipe_case(
        folder,
        tiny_recipe(folder / "blob.nii.gz"),
        "train.lr: must be a finite",
        ("train.lr=.inf",),
    )


@case
def case_recipe_batch_size_zero(folder: Path) -> Case:
    return _train_value(folder, "train.batch_size: must be > 0", batch_size=0)


@case
def case_recipe_patch_axes_mismatch(folder: Path) -> Case:
    return _train_value(
        folder, "train.patch_size: mdcsrn-b2u4 is a 3D network", patch_size=[16, 16]
    )


@case
def case_recipe_patch_larger_than_data(folder: Path) -> Case:
    return _train_value(folder, "is larger than the volume", patch_size=1000)


@case
def case_recipe_unknown_loss(folder: Path) -> Case:
    return _train_value(folder, "unknown loss", loss="banana")


@case
def case_recipe_unknown_model(folder: Path) -> Case:
    r = tiny_recipe(folder / "blob.nii.gz")
    r["model"] = {"name": "no-such-net"}
    return _recipe_case(folder, r, "unknown model")


@case
def case_recipe_unknown_task(folder: Path) -> Case:
    r = tiny_recipe(folder / "blob.nii.gz")
    r["task"] = "astrology"
    return _recipe_case(folder, r, "astrology")


@case
def case_recipe_not_a_mapping(folder: Path) -> Case:
    return _recipe_case(folder, "- just\n- a list\n", "expected a mapping at the top level")


def _bomb_line(prev: str, name: str) -> str:
    item = f"*{prev}" if prev else '"lol"'
    return f"{name}: &{name} [{', '.join([item] * 9)}]\n"


_BOMB = "".join(
    _bomb_line(prev, name)
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g"], "abcdefgh", strict=True)
)


@case
def case_recipe_alias_bomb(folder: Path) -> Case:
    """ "Billion laughs": 9^8 = 43 million values from 300 bytes, refused before expansion."""
    return _recipe_case(folder, f"name: tiny\ntask: sr_t1\n{_BOMB}", "an alias bomb")


@case
def case_recipe_alias_bomb_in_a_known_key(folder: Path) -> Case:
    """The bomb inside ``model:``: the message must not print the expanded value."""
    return _recipe_case(folder, f"{_BOMB}name: tiny\ntask: sr_t1\nmodel: *h\n", "an alias bomb")


@case
def case_recipe_self_alias(folder: Path) -> Case:
    return _recipe_case(folder, "name: &a [*a]\ntask: sr_t1\n", "aliases are expanded")


@case
def case_recipe_deep_nesting(folder: Path) -> Case:
    deep = "[" * 5000 + "]" * 5000
    return _recipe_case(folder, f"name: tiny\ntask: sr_t1\nmodel: {deep}\n", "nested deeper")


@case
def case_recipe_huge_scalar(folder: Path) -> Case:
    return _recipe_case(folder, f"name: {'x' * 100_000}\ntask: sr_t1\n", "characters (limit")


@case
def case_recipe_too_large(folder: Path) -> Case:
    filler = "# padding\n" * 120_000  # 1.2 MB of comments: refused before it is read
    return _recipe_case(folder, f"name: tiny\ntask: sr_t1\n{filler}", "larger than the limit")


@case
def case_recipe_override_deep(folder: Path) -> Case:
    c = _recipe_case(
        folder,
        tiny_recipe(folder / "blob.nii.gz"),
        "nested deeper",
        ("train.lr=" + "[" * 3000 + "]" * 3000,),
    )
    c.names = "override 'train.lr=[[["
    return c


# --------------------------------------------------------------------------- model cards


def _card_case(folder: Path, edit: Any, expect: str) -> Case:
    """The tiny weights with their card edited (the sha256 of the weights still matches)."""
    weights = _weights(folder)
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    text = edit(card)
    card_path.write_text(text if isinstance(text, str) else json.dumps(card))
    return _weights_case(folder, weights, expect, card_path)


@case
def case_card_inference_not_mapping(folder: Path) -> Case:
    return _card_case(folder, lambda c: c.update(inference=[64, 6]), "inference must be an object")


@case
def case_card_negative_architecture_size(folder: Path) -> Case:
    return _card_case(
        folder, lambda c: c["architecture"]["config"].update(growth=-4), "is not a usable size"
    )


@case
def case_card_unknown_task(folder: Path) -> Case:
    return _card_case(folder, lambda c: c.update(task="astrology"), "unknown task 'astrology'")


@case
def case_card_deeply_nested(folder: Path) -> Case:
    return _card_case(folder, lambda c: "[" * 100_000 + "]" * 100_000, "nested too deeply")


@case
def case_card_too_large(folder: Path) -> Case:
    return _card_case(folder, lambda c: c.update(notes="x" * 2_000_000), "larger than")


@case
def case_card_patch_not_integers(folder: Path) -> Case:
    return _card_case(
        folder, lambda c: c["inference"].update(patch_size="big"), "inference.patch_size"
    )


@case
def case_card_normalisation_not_mapping(folder: Path) -> Case:
    return _card_case(
        folder,
        lambda c: c.update(preprocessing={"normalisation": "banana"}),
        "preprocessing.normalisation",
    )


# --------------------------------------------------------------------------- DICOM series


@case
def case_dicom_mixed_modality(folder: Path) -> Case:
    def ct(ds: Any, k: int, t: int) -> None:
        if k == 3:
            ds.Modality = "CT"

    d = _series(folder, edit=ct)
    return _enhance_case(folder, d, "modality 'CT' differs from", names=d)


@case
def case_dicom_mixed_matrix(folder: Path) -> Case:
    from dicom_factory import write_series

    d = _series(folder, prefix="A")
    extra = folder / "other"
    extra.mkdir()
    # one slice of the same series at another matrix (8 x 12), moved into the folder
    write_series(extra, smooth_image((8, 12, 6)), _affine(), prefix="B", series_uid=_series_uid(d))
    moved = sorted(extra.iterdir())[-1]
    shutil.move(str(moved), d / "zz_odd_matrix.dcm")
    shutil.rmtree(extra)
    return _enhance_case(folder, d, "differs from", names=d)


@case
def case_dicom_mixed_pixel_spacing(folder: Path) -> Case:
    def spacing(ds: Any, k: int, t: int) -> None:
        if k == 2:
            ds.PixelSpacing = ["0.5", "0.5"]

    d = _series(folder, edit=spacing)
    return _enhance_case(folder, d, "PixelSpacing", names=d)


def _affine():
    from bad_inputs.build import affine_1mm

    return affine_1mm()


def _series_uid(d: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(sorted(d.iterdir())[0], stop_before_pixels=True).SeriesInstanceUID)


# --------------------------------------------------------------------------- weights


@case
def case_weights_hold_inf(folder: Path) -> Case:
    import torch

    from bad_inputs.build import TINY_INFERENCE
    from mrenhance.models import create_model
    from mrenhance.models.weights import save_weights

    wdir = folder / "weights"
    wdir.mkdir()
    model = create_model("mdcsrn-b2u4", growth=4)
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[0] = float("inf")
    weights = save_weights(
        model, wdir / "inf.safetensors", {"task": "sr_t1", "inference": TINY_INFERENCE}
    )
    return _weights_case(folder, weights, "holds NaN/Inf values; refused", weights)


__all__ = ["api_enhance"]  # re-exported for cases written against this module


# --------------------------------------------------------------------------- library warnings


def nifti_with_odd_extension(path: Path, data: Any = None) -> Path:
    """A NIfTI-1 whose header extension is 20 bytes (not a multiple of 16): nibabel loads
    it, with ``UserWarning: Extension size is not a multiple of 16 bytes``."""
    import struct

    p = write_nifti(path, smooth_image() if data is None else data)
    raw = bytearray(p.read_bytes())
    raw[348:352] = b"\x01\x00\x00\x00"  # extension flag
    raw = raw[:352] + struct.pack("<ii", 20, 0) + b"x" * 12 + raw[352:]
    raw[108:112] = struct.pack("<f", 372.0)  # vox_offset after the extension
    p.write_bytes(bytes(raw))
    return p


@case
def case_library_warning_and_nan_voxels(folder: Path) -> Case:
    """nibabel warns while reading, then the NaN voxels are refused: still one line."""
    data = smooth_image()
    data[1, 2, 3] = float("nan")
    p = nifti_with_odd_extension(folder / "warns.nii", data)
    c = _enhance_case(folder, p, "1 NaN/Inf voxels")
    api = c.api

    def quiet_api() -> None:  # the API keeps the warning (Python's rules); not a line here
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            api()  # type: ignore[misc]

    c.api = quiet_api
    return c
