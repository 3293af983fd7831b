"""BIDS dataset in, BIDS derivatives out (checked with pybids), and a sidecar for every output."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mrenhance import Volume
from mrenhance.cli import main
from mrenhance.io import save
from mrenhance.io.bids import find_bids_images, parse_bids_name
from mrenhance.models import create_model
from mrenhance.models.weights import save_weights


@pytest.fixture
def tiny_weights(tmp_path):
    card = {"task": "sr_t1", "inference": {"patch_size": 16, "overlap": 4, "blend": "crop"}}
    return save_weights(create_model("mdcsrn-b2u4", growth=4), tmp_path / "tiny.safetensors", card)


@pytest.fixture
def bids_root(tmp_path, small_brain):
    root = tmp_path / "raw"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-02" / "ses-pre" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "toy", "BIDSVersion": "1.10.0"})
    )
    vol = Volume(small_brain * 300, np.diag([1.0, 1.0, 1.2, 1.0]))
    save(vol, root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    save(vol, root / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
    save(vol, root / "sub-02" / "ses-pre" / "anat" / "sub-02_ses-pre_run-1_T1w.nii.gz")
    (root / "sub-01" / "anat" / "sub-01_T1w.json").write_text(
        json.dumps({"RepetitionTime": 2.3, "EchoTime": 0.003, "SliceThickness": 1.2,
                    "Sources": ["should-not-carry"]})
    )  # fmt: skip
    return root


def test_parse_bids_names():
    assert parse_bids_name("sub-01_ses-a_run-2_T1w.nii.gz") == (
        {"sub": "01", "ses": "a", "run": "2"},
        "T1w",
        ".nii.gz",
    )
    assert parse_bids_name("T1w.nii.gz") is None and parse_bids_name("sub-01_T1w.json") is None
    assert parse_bids_name("ses-a_sub-01_T1w.nii") is None  # sub comes first


def test_find_bids_images_filters(bids_root):
    assert len(find_bids_images(bids_root)) == 3
    t1 = find_bids_images(bids_root, suffixes=["T1w"])
    assert [i.relative for i in t1] == [
        "sub-01/anat/sub-01_T1w.nii.gz",
        "sub-02/ses-pre/anat/sub-02_ses-pre_run-1_T1w.nii.gz",
    ]
    assert len(find_bids_images(bids_root, subjects=["sub-02"], sessions=["pre"])) == 1
    from mrenhance.errors import InputError

    with pytest.raises(InputError, match="suffixes present: T1w, T2w"):
        find_bids_images(bids_root, suffixes=["bold"])


def test_enhance_a_bids_dataset_writes_valid_derivatives(bids_root, tiny_weights, tmp_path):
    bids = pytest.importorskip("bids")
    derivs = bids_root / "derivatives"
    code = main(["enhance", str(bids_root), "-o", str(derivs), "--model", str(tiny_weights),
                 "--suffix", "T1w", "--desc", "tiny", "-q"])  # fmt: skip
    assert code == 0
    pipeline = derivs / "mrenhance"
    out1 = pipeline / "sub-01" / "anat" / "sub-01_desc-tiny_T1w.nii.gz"
    out2 = pipeline / "sub-02" / "ses-pre" / "anat" / "sub-02_ses-pre_run-1_desc-tiny_T1w.nii.gz"
    assert out1.is_file() and out2.is_file()
    assert not (pipeline / "sub-01" / "anat" / "sub-01_desc-tiny_T2w.nii.gz").exists()

    description = json.loads((pipeline / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "mrenhance"

    side = json.loads(out1.with_name("sub-01_desc-tiny_T1w.json").read_text())
    assert side["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    assert side["RepetitionTime"] == 2.3 and side["SliceThickness"] == 1.2  # same grid
    assert "should-not-carry" not in json.dumps(side)
    info = side["mrenhance"]
    assert info["model"]["name"] == "tiny" and len(info["model"]["sha256"]) == 64
    assert info["parameters"]["patch_size"] == [16, 16, 16]
    assert {"mrenhance", "torch", "numpy", "nibabel"} <= set(info["versions"])
    assert any(step.startswith("enhance model=tiny") for step in info["provenance"])

    # a maintained BIDS library reads the layout: raw dataset + our derivatives
    layout = bids.BIDSLayout(str(bids_root), derivatives=str(pipeline), validate=True)
    found = layout.get(desc="tiny", suffix="T1w", extension=".nii.gz", scope="derivatives")
    assert sorted(f.path for f in found) == sorted([str(out1), str(out2)])
    entities = layout.get_file(str(out2)).get_entities()
    assert entities["subject"] == "02" and entities["session"] == "pre" and entities["run"] == 1


def test_every_output_gets_a_sidecar_and_the_users_descrip_is_kept(
    tmp_path, small_brain, tiny_weights
):
    src = tmp_path / "t1.nii.gz"
    img = nib.Nifti1Image(small_brain * 200, np.eye(4))
    img.header["descrip"] = b"scanner A, protocol 7"
    nib.save(img, src)
    out = tmp_path / "sr.nii.gz"
    assert main(["enhance", str(src), "-o", str(out), "--model", str(tiny_weights), "-q"]) == 0
    assert nib.load(out).header["descrip"].tobytes().rstrip(b"\0") == b"scanner A, protocol 7"
    side = json.loads((tmp_path / "sr.json").read_text())
    assert side["Sources"] == [str(src.resolve())]
    assert side["mrenhance"]["provenance"][0] == f"load {src}"
    # BIDS filters on a plain file are a one-line error
    args = ["enhance", str(src), "-o", str(tmp_path / "x.nii.gz"), "--model", str(tiny_weights)]
    assert main([*args, "--suffix", "T1w", "-q"]) == 2
