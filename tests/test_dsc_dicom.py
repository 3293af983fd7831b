"""A DSC series as DICOM, end to end: frame times read, maps on the input grid, the
shipped stU-Net on it, and the same numbers as the NIfTI path on the same data."""

from __future__ import annotations

import numpy as np
import pytest

from dicom_factory import write_series
from mrenhance.cli import main
from mrenhance.io import load, save

TR_S = 1.25  # not the 1 s a default would give: the frame interval must come from the file


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """One simulated tumour subject, 64 x 64 x 2 slices x 40 frames, written twice: a
    DICOM folder (int16, slope 1e-4, frame times and no RepetitionTime) and a NIfTI."""
    from mrenhance.simulate import dsc as D
    from mrenhance.simulate import subjects as S

    subject = S.draw_subject(
        np.random.default_rng(3), voxel_mm=4.0, shape=(64, 64, 47), lesions=("tumour",)
    )
    zc = int(np.argwhere(subject.lesion_masks["tumour"]).mean(axis=0)[2])
    protocol = D.DSCProtocol(n_frames=40, tr_s=TR_S)
    sim = D.simulate_dsc(subject, np.random.default_rng(0), protocol, z_range=(zc - 1, zc + 1))
    root = tmp_path_factory.mktemp("dsc")
    (root / "dicom").mkdir()
    write_series(
        root / "dicom", sim.signal, sim.affine, rescale=(1e-4, 0.0), times=sim.times_s, tr_ms=None
    )
    save(sim.volume(), root / "dsc.nii.gz")
    return sim, root


def test_the_dicom_series_loads_with_its_frame_times_and_grid(series):
    sim, root = series
    vol = load(root / "dicom")
    assert vol.shape == (64, 64, 2, 40) and "tr_s" not in vol.meta
    np.testing.assert_allclose(vol.meta["times_s"], sim.times_s, atol=1e-3)
    np.testing.assert_allclose(vol.affine, sim.affine, atol=1e-4)
    np.testing.assert_allclose(vol.data, sim.signal, atol=1e-4)  # the int16 quantisation


@pytest.mark.slow
def test_perfusion_maps_from_dicom_match_the_nifti_path_on_the_input_grid(series):
    sim, root = series
    assert main(["perfusion", str(root / "dicom"), "-o", str(root / "maps_dicom"), "-q"]) == 0
    assert main(["perfusion", str(root / "dsc.nii.gz"), "-o", str(root / "maps_nifti"), "-q"]) == 0
    brain = load(root / "maps_nifti" / "cbv.nii.gz").data > 0
    assert brain.sum() > 1000
    for name in ("cbv", "cbf", "mtt", "tmax"):
        got = load(root / "maps_dicom" / f"{name}.nii.gz")
        ref = load(root / "maps_nifti" / f"{name}.nii.gz").data
        assert got.shape == sim.cbv.shape
        np.testing.assert_allclose(got.affine, sim.affine, atol=1e-4)
        close = np.isclose(got.data, ref, rtol=0.01, atol=0.01 * np.abs(ref).max())
        # Tmax is an argmax of a noisy residue: a rare voxel may pick another frame
        assert close[brain].mean() > (0.99 if name == "tmax" else 0.999), name
    # the frame interval came from the frame times: the AIF curve is sampled at 1.25 s
    times = np.loadtxt(root / "maps_dicom" / "aif.tsv", skiprows=1)[:, 0]
    np.testing.assert_allclose(times, sim.times_s, atol=1e-3)


@pytest.mark.slow
def test_enhance_with_the_shipped_stunet_reads_a_dicom_dsc_series(series):
    """``mrenhance enhance <dicom folder> -o cbv.nii.gz --model stunet-dsc-cbv``."""
    from mrenhance.models.weights import shipped_weights_dir

    if not (shipped_weights_dir() / "stunet-dsc-cbv.safetensors").is_file():
        pytest.skip("stunet-dsc-cbv is not shipped")
    sim, root = series
    for src, out in (("dicom", "cbv_dicom.nii.gz"), ("dsc.nii.gz", "cbv_nifti.nii.gz")):
        args = ["enhance", str(root / src), "-o", str(root / out), "--model", "stunet-dsc-cbv"]
        assert main([*args, "-q"]) == 0
    cbv = load(root / "cbv_dicom.nii.gz")
    assert cbv.shape == sim.cbv.shape
    np.testing.assert_allclose(cbv.affine, sim.affine, atol=1e-4)
    ref = load(root / "cbv_nifti.nii.gz").data
    np.testing.assert_allclose(cbv.data, ref, atol=1e-3 * ref.max())
    inside = sim.brain_mask & (sim.cbv > 0.5)
    assert np.corrcoef(cbv.data[inside], sim.cbv[inside])[0, 1] > 0.3


def test_the_echo_time_comes_from_dicom_or_the_sidecar_and_ms_are_refused(tmp_path, capsys):
    import json

    from mrenhance.tasks.dsc_cli import DEFAULT_TE_S, echo_time_s
    from mrenhance.volume import Volume

    rng = np.random.default_rng(0)
    data = (100 + rng.random((4, 4, 2, 12))).astype(np.float32)
    folder = tmp_path / "dicom"
    folder.mkdir()

    def te_25ms(ds, *_):
        ds.EchoTime = "25"

    write_series(folder, data, np.eye(4), edit=te_25ms, shuffle=False)
    vol = load(folder)
    assert vol.meta["te_s"] == pytest.approx(0.025)
    assert echo_time_s(vol, folder) == pytest.approx(0.025)
    # NIfTI: the BIDS sidecar's EchoTime (seconds), else the default
    nifti = save(Volume(data, np.eye(4)), tmp_path / "dsc.nii.gz")
    assert echo_time_s(load(nifti), nifti) == DEFAULT_TE_S
    side = tmp_path / "dsc.json"
    side.write_text(json.dumps({"EchoTime": 0.032}))
    assert echo_time_s(load(nifti), nifti) == pytest.approx(0.032)
    side.write_text(json.dumps({"EchoTime": 32}))  # milliseconds: a units mistake
    out = tmp_path / "maps"
    assert main(["perfusion", str(nifti), "-o", str(out), "--tr", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "EchoTime 32" in err[0] and "--te" in err[0]
    assert not out.exists()  # refused before any output
